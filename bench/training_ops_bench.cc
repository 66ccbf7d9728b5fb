// Microbenchmarks of the CPU training ops at SmolLM2-135M's shapes: Softmax and CrossEntropy
// over [T][V = 49152] logits (T = 512, a training micro-batch, and T = 1), and AdamW over 4M and
// 135M parameters, with 1 and 2 threads. Each reports GB/s (bytes the op must read plus write,
// per second) and that rate as a fraction of the memory-read ceiling measured in this binary
// with the same thread count (bench/read_ceiling.h: an AVX2 sum over 1 GiB). A [1][49152] row
// is 192 KB and stays in cache between iterations, so its fraction can exceed 1.
//   build/h_ops/bench/training_ops_bench --benchmark_repetitions=3
//   (add --benchmark_report_aggregates_only=true for medians only)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "kernels/adamw.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cross_entropy.h"
#include "kernels/softmax.h"
#include "bench/read_ceiling.h"
#include "tests/testing/kernel_data.h"

namespace anvil {
namespace {

using bench::MemReadBandwidth;
using bench::ReadCeilingGBps;

// Sets GB/s and its fraction of the read ceiling from the bytes one iteration moves; `seconds`
// is the wall time of the whole timing loop (the fraction is a plain number, not a rate).
void ReportBandwidth(benchmark::State& state, double bytes, int threads, double seconds) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  const double gbps = bytes * static_cast<double>(state.iterations()) * 1e-9 / seconds;
  state.counters["of_read_ceiling"] = gbps / ReadCeilingGBps(threads);
}

// Wall seconds since t0.
double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool CheckCpu(benchmark::State& state) {
  if (cpu::Supported()) return true;
  state.SkipWithError("CPU lacks AVX2/FMA/F16C");
  return false;
}

// Softmax over [t][v] logits into a separate output: reads and writes t*v floats.
void BenchSoftmax(benchmark::State& state, int64_t t, int64_t v, int threads) {
  if (!CheckCpu(state)) return;
  ReadCeilingGBps(threads);  // measured before the op's timing starts
  const std::vector<float> x = testing::RandomFloats(t * v, 1, -10.0f, 10.0f);  // [T][V]
  std::vector<float> y(t * v);                                                  // [T][V]
  ThreadPool pool(threads);
  const ExecContext ctx{Backend::kCpu, &pool};
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    if (!Softmax(ctx, {x.data(), y.data(), t, v}).ok()) state.SkipWithError("softmax failed");
    benchmark::ClobberMemory();
  }
  ReportBandwidth(state, 2.0 * 4 * static_cast<double>(t * v), threads, SecondsSince(t0));
}

// Cross-entropy with lse, every row counted: reads t*v logits (the targets and the two [T]
// outputs are negligible).
void BenchCrossEntropy(benchmark::State& state, int64_t t, int64_t v, int threads) {
  if (!CheckCpu(state)) return;
  ReadCeilingGBps(threads);
  const std::vector<float> logits = testing::RandomFloats(t * v, 2, -10.0f, 10.0f);  // [T][V]
  std::vector<int32_t> targets(t);                                                   // [T]
  for (int64_t i = 0; i < t; ++i) targets[i] = static_cast<int32_t>(i * 7919 % v);
  std::vector<float> loss(t), lse(t);  // [T]
  ThreadPool pool(threads);
  const ExecContext ctx{Backend::kCpu, &pool};
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const CrossEntropyArgs a{logits.data(), targets.data(), loss.data(), lse.data(), t, v};
    if (!CrossEntropy(ctx, a).ok()) state.SkipWithError("cross_entropy failed");
    benchmark::ClobberMemory();
  }
  ReportBandwidth(state, 4.0 * static_cast<double>(t * v), threads, SecondsSince(t0));
}

// One AdamW step over n parameters: reads p, g, m, v and writes p, m, v (28 bytes each). The
// step number grows so that the bias corrections change as in training.
void BenchAdamW(benchmark::State& state, int64_t n, int threads) {
  if (!CheckCpu(state)) return;
  ReadCeilingGBps(threads);
  std::vector<float> p = testing::RandomFloats(n, 3);                       // [n]
  const std::vector<float> g = testing::RandomFloats(n, 4, -1e-2f, 1e-2f);  // [n]
  std::vector<float> m(n, 0.0f), v(n, 0.0f);                                // [n]
  ThreadPool pool(threads);
  const ExecContext ctx{Backend::kCpu, &pool};
  int64_t step = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const AdamWArgs a{p.data(), g.data(), m.data(), v.data(), n, ++step};
    if (!AdamW(ctx, a).ok()) state.SkipWithError("adamw failed");
    benchmark::ClobberMemory();
  }
  ReportBandwidth(state, 28.0 * static_cast<double>(n), threads, SecondsSince(t0));
}

void RegisterAll() {
  for (int threads : {1, 2}) {
    benchmark::RegisterBenchmark(absl::StrCat("MemReadBandwidth/threads:", threads).c_str(),
                                 MemReadBandwidth)
        ->Arg(threads)
        ->UseRealTime();
  }
  const int64_t v = 49152;
  for (int64_t t : {512, 1}) {
    for (int threads : {1, 2}) {
      const std::string shape = absl::StrCat("/T:", t, "/V:", v, "/threads:", threads);
      benchmark::RegisterBenchmark(("Softmax" + shape).c_str(), BenchSoftmax, t, v, threads)
          ->UseRealTime();
      benchmark::RegisterBenchmark(("CrossEntropy" + shape).c_str(), BenchCrossEntropy, t, v,
                                   threads)
          ->UseRealTime();
    }
  }
  for (int64_t n : {int64_t{4} << 20, int64_t{135} * 1000 * 1000}) {
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark(absl::StrCat("AdamW/n:", n, "/threads:", threads).c_str(),
                                   BenchAdamW, n, threads)
          ->UseRealTime();
    }
  }
}

}  // namespace
}  // namespace anvil

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  anvil::RegisterAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
