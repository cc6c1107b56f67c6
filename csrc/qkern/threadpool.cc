// threadpool.cc: the persistent pool: workers sleep on a condition variable after a short spin.
#include "qkern/threadpool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__)
#include <pthread.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QK_PAUSE() _mm_pause()
#else
#define QK_PAUSE() ((void)0)
#endif

#include "qkern/common.h"
#include "qkern/tuning.h"

namespace qk {

namespace {

// How long a worker spins for the next call before sleeping (tuning.h).
constexpr auto kSpinTime = std::chrono::microseconds(kSpinMicroseconds);

class Pool {
 public:
  explicit Pool(int threads) {
    resize(threads);
#if defined(__unix__)
    instance_ = this;  // the pool is a process-wide singleton (pool() below)
    pthread_atfork(nullptr, nullptr, [] {
      if (instance_ != nullptr) instance_->after_fork_in_child();
    });
#endif
  }
  ~Pool() {
    instance_ = nullptr;  // a fork during static destruction has no pool to fix
    stop_workers();
  }

  int threads() const { return threads_; }

  void resize(int threads) {
    std::lock_guard<std::mutex> call(call_mutex_);
    stop_workers();
    threads_ = std::max(1, threads);
    stop_ = false;
    ranges_.reset(new Range[static_cast<size_t>(threads_)]);
    // A new worker starts at the current generation: earlier work is not its to run.
    for (int t = 1; t < threads_; ++t) workers_.emplace_back([this, t, g = generation_.load()] { worker(t, g); });
  }

  void run(int64_t tasks, const std::function<void(int64_t)>& fn) {
    if (respawn_.load(std::memory_order_relaxed)) {  // the first call in a forked child starts its workers
      resize(threads_);
      respawn_.store(false, std::memory_order_relaxed);
    }
    std::unique_lock<std::mutex> call(call_mutex_, std::try_to_lock);
    const int64_t nthreads = std::min<int64_t>(threads_, tasks);
    if (!call.owns_lock() || nthreads <= 1) {
      for (int64_t i = 0; i < tasks; ++i) fn(i);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      for (int64_t t = 0; t < nthreads; ++t) {
        ranges_[t].next.store(t * tasks / nthreads, std::memory_order_relaxed);
        ranges_[t].end = (t + 1) * tasks / nthreads;
      }
      active_.store(static_cast<int>(nthreads), std::memory_order_relaxed);
      caller_cpu_.store(current_cpu(), std::memory_order_relaxed);
      error_ = nullptr;
      open_.store(generation_.load() + 1);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    run_tasks(0);
    // Close the call, then wait only for workers that entered it (they finish the task in hand). A
    // worker still waking up is not waited for: it will see the call closed and touch nothing. Both
    // sides use sequentially consistent operations on open_ and inside_, so one of them sees the other.
    open_.store(0);
    const auto spin_end = std::chrono::steady_clock::now() + kSpinTime;
    for (int spin = 1; inside_.load() != 0; ++spin) {
      QK_PAUSE();
      if (spin % kSpinsPerCheck != 0 || std::chrono::steady_clock::now() < spin_end) continue;
      std::unique_lock<std::mutex> lock(mutex_);
      caller_waiting_.store(true);  // then inside_ is read: a worker leaving either sees it or is seen
      done_.wait(lock, [this] { return inside_.load() == 0; });
      caller_waiting_.store(false);
      break;
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Thread t first claims the tasks of its own contiguous range (so repeated calls of the same shape touch
  // the same B panels from the same core and find them in its L2), then claims what is left of the others'
  // ranges: a worker that wakes late (a futex wake-up on an idle vCPU can take far longer than the call)
  // leaves its share to the others and is not waited for. Which thread computes a task never changes its
  // result: K is never split (docs/kernels.md).
  void run_tasks(int self) {
    const int n = active_.load(std::memory_order_relaxed);
    try {
      for (int step = 0; step < n; ++step) {
        Range& r = ranges_[(self + step) % n];
        for (int64_t i = r.next.fetch_add(1, std::memory_order_relaxed); i < r.end;
             i = r.next.fetch_add(1, std::memory_order_relaxed))
          (*fn_)(i);
      }
    } catch (...) {
      for (int t = 0; t < n; ++t) ranges_[t].next.store(ranges_[t].end, std::memory_order_relaxed);
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
  }

  void worker(int t, uint64_t seen) {
    for (;;) {
      // Spin for kSpinTime for the next call before sleeping: back-to-back calls (a model's layers)
      // then skip the futex wake-up. Every kSpinsPerCheck-th step yields, so a spinner that shares a CPU with the
      // caller hands it back at once. A call seen while spinning is joined without taking mutex_: the
      // caller may still hold it, and a worker that blocks on it sleeps in the kernel for 0.1-1 ms on
      // this VM, long enough to miss the call, and then the next one at the same point.
      const auto spin_end = std::chrono::steady_clock::now() + kSpinTime;
      uint64_t g = generation_.load(std::memory_order_acquire);
      for (int spin = 1; g == seen; ++spin, g = generation_.load(std::memory_order_acquire)) {
        QK_PAUSE();
        if (spin % kSpinsPerCheck != 0) continue;
        if (std::chrono::steady_clock::now() > spin_end) break;
        std::this_thread::yield();
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
        if (stop_) return;
        g = generation_.load(std::memory_order_acquire);
        lock.unlock();
        leave_caller_cpu();
      }
      seen = g;
      // inside_ first, then open_ (both sequentially consistent): if the call is still open, its caller
      // will wait for this worker, so fn_, active_ and ranges_ stay as they are until it leaves.
      inside_.fetch_add(1);
      if (open_.load() == seen && t < active_.load(std::memory_order_relaxed)) run_tasks(t);
      if (inside_.fetch_sub(1) == 1 && caller_waiting_.load()) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
  }

  static int current_cpu() {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
  }

  // A worker woken from its sleep is placed on the waker's CPU (the kernel's wake-affine heuristic), so
  // it time-slices with the caller while the other CPU idles, until the load balancer separates them:
  // measured as the first ~10 ms of calls after an idle pause running at one thread's speed or worse.
  // If it woke on the caller's CPU, it moves itself off it (its allowed set minus that CPU, then the set
  // restored: the kernel does not move a running thread back onto a busy CPU).
  void leave_caller_cpu() {
#if defined(__linux__)
    const int cpu = current_cpu();
    if (cpu < 0 || cpu != caller_cpu_.load(std::memory_order_relaxed) || cpu >= CPU_SETSIZE) return;
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0 || CPU_COUNT(&allowed) < 2) return;
    cpu_set_t others = allowed;
    CPU_CLR(cpu, &others);
    if (sched_setaffinity(0, sizeof(others), &others) == 0) sched_setaffinity(0, sizeof(allowed), &allowed);
#endif
  }

  // A forked child has only the thread that called fork: the workers do not exist there, and a lock or a
  // call may have been held by a thread that is gone. Their std::thread objects move to a list that is
  // never destroyed (joining a thread that does not exist would hang; destroying a joinable std::thread
  // terminates), the locks, condition variables and call state start afresh, and the next call starts
  // new workers. Runs in the child before fork() returns there, with only this thread alive.
  void after_fork_in_child() {
    static auto* const orphans = new std::vector<std::thread>();  // reachable for the process's lifetime
    for (auto& w : workers_) orphans->push_back(std::move(w));
    workers_.clear();
    new (&call_mutex_) std::mutex;
    new (&mutex_) std::mutex;
    new (&wake_) std::condition_variable;
    new (&done_) std::condition_variable;
    fn_ = nullptr;
    error_ = nullptr;
    stop_ = false;
    active_.store(0);
    caller_waiting_.store(false);
    open_.store(0);
    inside_.store(0);
    respawn_.store(threads_ > 1);
  }

  void stop_workers() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  std::mutex call_mutex_;  // one parallel call at a time; others run serially
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  const std::function<void(int64_t)>* fn_ = nullptr;
  struct alignas(64) Range {
    std::atomic<int64_t> next{0};  // the next task of this range to claim
    int64_t end = 0;
  };
  std::unique_ptr<Range[]> ranges_;  // one per thread; thread t owns ranges_[t]
  std::atomic<int> active_{0};     // threads taking part in the current call
  std::atomic<bool> caller_waiting_{false};  // the caller sleeps on done_
  std::atomic<int> caller_cpu_{-1};          // where the current call's caller ran when it opened the call
  std::atomic<uint64_t> open_{0};  // the generation whose tasks may still be claimed; 0 when closed
  std::atomic<int> inside_{0};     // workers between entering a call and leaving it
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  int threads_ = 1;
  std::atomic<bool> respawn_{false};  // set in a forked child: workers must be started again
  static inline Pool* instance_ = nullptr;
  std::exception_ptr error_;
};

// QKERN_NUM_THREADS when it is a whole integer in [1, kMaxThreads] (python/qkern/_env.py warns about any other
// value), else the number of CPUs this process may run on (its affinity mask, as a container or taskset
// sets it), else the machine's.
int initial_threads() {
  if (const char* env = std::getenv("QKERN_NUM_THREADS")) {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= kMaxThreads) return static_cast<int>(n);
  }
#if defined(__linux__)
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) >= 1)
    return std::min(CPU_COUNT(&allowed), kMaxThreads);
#endif
  const unsigned hw = std::thread::hardware_concurrency();
  return hw ? std::min(static_cast<int>(hw), kMaxThreads) : 1;
}

Pool& pool() {
  static Pool p(initial_threads());
  return p;
}

}  // namespace

int get_num_threads() { return pool().threads(); }

void set_num_threads(int n) {
  QK_REQUIRE(n >= 1 && n <= kMaxThreads, "number of threads must be in [1, " + std::to_string(kMaxThreads) + "]");
  if (n != pool().threads()) pool().resize(n);
}

void parallel_for(int64_t tasks, const std::function<void(int64_t)>& fn) { pool().run(tasks, fn); }

}  // namespace qk
