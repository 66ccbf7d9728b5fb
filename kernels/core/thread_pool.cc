// Persistent thread pool: workers spin on an atomic generation counter for a short while after
// each job, then sleep on a condition variable; the caller spins until all workers are done.
#include "kernels/core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ANVIL_CPU_RELAX() _mm_pause()
#else
#define ANVIL_CPU_RELAX() std::this_thread::yield()
#endif

namespace anvil {
namespace {

// About a millisecond of spinning before a worker goes to sleep.
constexpr int kSpinIterations = 1 << 14;

// Range of thread `t` of `k` over [0, n) in multiples of `grain`.
void SplitRange(int64_t n, int64_t grain, int t, int k, int64_t* begin, int64_t* end) {
  const int64_t chunks = (n + grain - 1) / grain;
  const int64_t per = chunks / k;
  const int64_t extra = chunks % k;
  const int64_t c0 = t * per + std::min<int64_t>(t, extra);
  const int64_t c1 = c0 + per + (t < extra ? 1 : 0);
  *begin = std::min(n, c0 * grain);
  *end = std::min(n, c1 * grain);
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  workers_.reserve(num_threads_ - 1);
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  start_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int spin = 0; gen == seen && spin < kSpinIterations; ++spin) {
      if (stop_.load(std::memory_order_relaxed)) return;
      ANVIL_CPU_RELAX();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleeping_.fetch_add(1);  // seq_cst: pairs with the caller's generation bump + load
      start_cv_.wait(lock, [&] {
        return stop_.load() || generation_.load(std::memory_order_acquire) != seen;
      });
      sleeping_.fetch_sub(1);
      if (stop_.load()) return;
      gen = generation_.load(std::memory_order_acquire);
    }
    seen = gen;
    int64_t b, e;
    SplitRange(n_, grain_, index, num_threads_, &b, &e);
    if (b < e) (*fn_)(b, e, index);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (num_threads_ == 1 || n <= grain) {
    fn(0, n, 0);
    return;
  }
  fn_ = &fn;
  n_ = n;
  grain_ = grain;
  pending_.store(num_threads_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1);  // seq_cst: publishes the job
  if (sleeping_.load() > 0) {
    std::lock_guard<std::mutex> lock(mu_);  // a worker between its check and wait holds mu_
    start_cv_.notify_all();
  }
  int64_t b, e;
  SplitRange(n, grain, 0, num_threads_, &b, &e);
  if (b < e) fn(b, e, 0);
  for (int spin = 0; pending_.load(std::memory_order_acquire) != 0; ++spin) {
    if (spin < kSpinIterations) {
      ANVIL_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 const std::function<void(int64_t, int64_t, int)>& fn) {
  if (pool == nullptr) {
    if (n > 0) fn(0, n, 0);
    return;
  }
  pool->ParallelFor(n, grain, fn);
}

}  // namespace anvil
