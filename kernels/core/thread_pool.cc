// Persistent thread pool: workers sleep on a condition variable between ParallelFor calls.
#include "kernels/core/thread_pool.h"

#include <algorithm>

namespace anvil {
namespace {

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
    stop_ = true;
  }
  start_cv_.notify_all();
  for (auto& w : workers_) w.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    const std::function<void(int64_t, int64_t, int)>* fn;
    int64_t n, grain;
    {
      std::unique_lock<std::mutex> lock(mu_);
      start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      fn = fn_;
      n = n_;
      grain = grain_;
    }
    int64_t b, e;
    SplitRange(n, grain, index, num_threads_, &b, &e);
    if (b < e) (*fn)(b, e, index);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_cv_.notify_one();
    }
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    grain_ = grain;
    pending_ = num_threads_ - 1;
    ++generation_;
  }
  start_cv_.notify_all();
  int64_t b, e;
  SplitRange(n, grain, 0, num_threads_, &b, &e);
  if (b < e) fn(b, e, 0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [&] { return pending_ == 0; });
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
