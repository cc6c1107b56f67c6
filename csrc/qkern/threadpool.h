// threadpool.h: qkern's own persistent thread pool: static, deterministic partitions; no OpenMP state.
#pragma once

#include <cstdint>
#include <functional>

namespace qk {

int get_num_threads();
void set_num_threads(int n);  // n >= 1; initialised from QKERN_NUM_THREADS, else the number of CPUs

// Runs fn(task) for task in [0, tasks) on up to get_num_threads() threads (the caller is one of them).
// Thread t takes the contiguous range [t*tasks/T, (t+1)*tasks/T): the partition depends only on the task
// count and T, never on timing. If the pool is busy with another caller's work, this call runs serially
// in the calling thread instead of waiting (several Python threads may call at once).
void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn);

}  // namespace qk
