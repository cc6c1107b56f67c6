// threadpool.h: qkern's own persistent thread pool: contiguous ranges per thread with stealing; no OpenMP state.
#pragma once

#include <cstdint>
#include <functional>

namespace qk {

// The most threads the pool accepts (set_num_threads; QKERN_NUM_THREADS is capped to it).
constexpr int kMaxThreads = 1024;

int get_num_threads();
void set_num_threads(int n);  // n >= 1; initialised from QKERN_NUM_THREADS, else the number of CPUs

// Runs fn(task) for task in [0, tasks) on up to get_num_threads() threads (the caller is one of them).
// Thread t starts on the contiguous range [t*tasks/T, (t+1)*tasks/T) and then helps with what is left of the
// others' ranges. Results never depend on which thread runs a task (every task writes its own outputs). If the pool is busy with another caller's work, this call runs serially
// in the calling thread instead of waiting (several Python threads may call at once).
void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn);

}  // namespace qk
