// The memory-read ceiling every CPU benchmark is judged against, shared by the bench binaries:
// an AVX2 sum over 1 GiB (past this VM's 480 MB L3) split over a ThreadPool. MemReadBandwidth
// reports it as a benchmark row; ReadCeilingGBps measures it once per thread count and process
// (best of 5 passes after a warm-up: a strict yardstick) for the rows' fraction counters.
#ifndef ANVIL_BENCH_READ_CEILING_H_
#define ANVIL_BENCH_READ_CEILING_H_

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/core/thread_pool.h"

namespace anvil::bench {

inline constexpr int64_t kReadCeilingFloats = int64_t{1024} << 20 >> 2;  // 1 GiB

// One AVX2 read pass over `data` on `pool`; the sums land in partial[thread].
inline void ReadPass(ThreadPool& pool, const std::vector<float>& data,
                     std::vector<float>& partial) {
  pool.ParallelFor(static_cast<int64_t>(data.size()), 1 << 16, [&](int64_t b, int64_t e, int t) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = b; i + 32 <= e; i += 32) {
      a0 = _mm256_add_ps(a0, _mm256_loadu_ps(data.data() + i));
      a1 = _mm256_add_ps(a1, _mm256_loadu_ps(data.data() + i + 8));
      a2 = _mm256_add_ps(a2, _mm256_loadu_ps(data.data() + i + 16));
      a3 = _mm256_add_ps(a3, _mm256_loadu_ps(data.data() + i + 24));
    }
    alignas(32) float l[8];
    _mm256_store_ps(l, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    partial[t] = l[0] + l[7];
  });
  benchmark::DoNotOptimize(partial.data());
}

// The ceiling in GB/s with `threads` threads, measured once per process and thread count.
inline double ReadCeilingGBps(int threads) {
  static auto* cache = new std::map<int, double>;
  if (auto it = cache->find(threads); it != cache->end()) return it->second;
  std::vector<float> data(kReadCeilingFloats, 1.0f);
  ThreadPool pool(threads);
  std::vector<float> partial(threads);
  ReadPass(pool, data, partial);
  double best = 0.0;
  for (int pass = 0; pass < 5; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    ReadPass(pool, data, partial);
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = std::max(best, static_cast<double>(kReadCeilingFloats) * 4 * 1e-9 / dt.count());
  }
  return (*cache)[threads] = best;
}

// The same pass as a benchmark row (range(0) = threads).
inline void MemReadBandwidth(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  std::vector<float> data(kReadCeilingFloats, 1.0f);
  ThreadPool pool(threads);
  std::vector<float> partial(threads);
  for (auto _ : state) ReadPass(pool, data, partial);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(kReadCeilingFloats) * 4 * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace anvil::bench

#endif  // ANVIL_BENCH_READ_CEILING_H_
