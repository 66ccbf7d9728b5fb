// A persistent pool of worker threads for data-parallel kernels: ParallelFor splits [0, n)
// into one contiguous range per thread (the caller's thread takes part) and returns when all
// are done. No thread is created per op. Between calls workers spin briefly on an atomic
// generation counter (a decode step issues hundreds of small ParallelFors, and a condition
// variable hand-off per op costs more than the op), then sleep on a condition variable.
// Not reentrant: one ParallelFor at a time per pool.
#ifndef ANVIL_KERNELS_CORE_THREAD_POOL_H_
#define ANVIL_KERNELS_CORE_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace anvil {

class ThreadPool {
 public:
  // `num_threads` counts the caller: 1 means no worker threads.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls fn(begin, end, thread_index) on disjoint ranges covering [0, n), split into chunks
  // that are multiples of `grain` (except the last).
  void ParallelFor(int64_t n, int64_t grain,
                   const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void WorkerLoop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  // The job: written by the caller before it bumps generation_ (release), read by workers after
  // they observe the new generation (acquire).
  const std::function<void(int64_t, int64_t, int)>* fn_ = nullptr;
  int64_t n_ = 0;
  int64_t grain_ = 1;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};   // workers still running the current job
  std::atomic<int> sleeping_{0};  // workers blocked on start_cv_
  std::atomic<bool> stop_{false};
  std::mutex mu_;                 // only for sleeping/waking
  std::condition_variable start_cv_;
};

// Runs fn over [0, n) on `pool`, or inline when pool is null.
void ParallelFor(ThreadPool* pool, int64_t n, int64_t grain,
                 const std::function<void(int64_t, int64_t, int)>& fn);

}  // namespace anvil

#endif  // ANVIL_KERNELS_CORE_THREAD_POOL_H_
