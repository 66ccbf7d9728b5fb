// F32 matrix products against OpenBLAS sgemm, at SmolLM2-135M's shapes with M = 512 tokens.
// Each row times our op and raw cblas_sgemm (OpenBLAS threading itself with the same thread
// count) in alternating blocks, so machine noise hits both alike, and reports GFLOP/s for each
// and our fraction of OpenBLAS ("of_openblas"):
//   MatMulF32/...: anvil::MatMul with F32 weights (our AVX2 kernel), y[M][N] = x[M][K]·W[N][K]^T.
//   Gemm/{fwd,dx,dw}/...: anvil::Gemm (split-bf16 AMX tiles where the CPU has AMX-BF16, else
//     OpenBLAS single-threaded on row slices of our pool; ANVIL_NO_AMX=1 forces the latter) at
//     the three products of a linear layer y = x·W^T in training: fwd y = x·W^T, dx = dy·W,
//     dw = dy^T·x.
// The context lines name OpenBLAS's kernel (openblas_get_corename) and build, and Gemm's engine.
//   build/h_gemm/bench/gemm_bench --benchmark_filter=threads:2
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "tests/testing/kernel_data.h"

namespace anvil {
namespace {

constexpr int64_t kTokens = 512;
// Alternating OpenBLAS/ours blocks per benchmark row (each block ~2 GFLOP or one call).
constexpr int kBlocks = 8;

double Seconds(const std::function<void()>& fn) {
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Each benchmark iteration times a block of ~2 GFLOP of OpenBLAS calls (OpenBLAS threading
// itself), then the same block of ours: alternating blocks let machine noise hit both alike.
// After each pause one untimed call of the same op starts the block, for both.
// After a threaded call OpenBLAS's workers keep spinning for ~0.1 s (we measured ~40 ms of CPU in
// the 100 ms after one call) and would steal a core from our pool, so a pause long enough for them
// to go to sleep precedes each block, ours and OpenBLAS's alike. The benchmark's (manual) time is
// ours alone, per call.
void TimeAgainstOpenBlas(benchmark::State& state, double flops, int threads,
                         const std::function<bool()>& ours, const std::function<void()>& openblas) {
  constexpr double kBlockFlops = 2e9;  // 10-20 ms per block at 100-200 GFLOP/s
  constexpr auto kPause = std::chrono::milliseconds(200);
  const int reps = std::max(1, static_cast<int>(kBlockFlops / flops));
  openblas_set_num_threads(threads);
  openblas();  // warm-up: first touch of the outputs, OpenBLAS's buffers
  if (!ours()) {
    state.SkipWithError("op failed");
    return;
  }
  double ours_s = 0.0, openblas_s = 0.0;
  for (auto _ : state) {
    // The thread count is process-wide; our Gemm sets it back to 1 for its slices.
    openblas_set_num_threads(threads);
    if (threads > 1) std::this_thread::sleep_for(kPause);
    openblas();  // untimed: wakes the threads (and the AMX unit for ours) after the pause
    openblas_s += Seconds([&] {
      for (int i = 0; i < reps; ++i) openblas();
    });
    if (threads > 1) std::this_thread::sleep_for(kPause);
    if (!ours()) {
      state.SkipWithError("op failed");
      return;
    }
    bool ok = true;
    const double s = Seconds([&] {
      for (int i = 0; i < reps && ok; ++i) ok = ours();
    });
    if (!ok) {
      state.SkipWithError("op failed");
      return;
    }
    ours_s += s;
    state.SetIterationTime(s / reps);
    benchmark::ClobberMemory();
  }
  const double total = flops * reps * static_cast<double>(state.iterations()) * 1e-9;
  state.counters["GFLOP/s"] = total / ours_s;
  state.counters["openblas_GFLOP/s"] = total / openblas_s;
  state.counters["of_openblas"] = openblas_s / ours_s;
}

void BenchMatMulF32(benchmark::State& state, int64_t n, int64_t k, int threads) {
  if (!cpu::Supported()) {
    state.SkipWithError("CPU lacks AVX2/FMA/F16C");
    return;
  }
  const std::vector<float> w = testing::RandomFloats(n * k, 1);         // [N][K]
  const std::vector<float> x = testing::RandomFloats(kTokens * k, 2);   // [M][K]
  std::vector<float> y(kTokens * n), y_blas(kTokens * n);               // [M][N]
  ThreadPool pool(threads);
  const ExecContext ctx{Backend::kCpu, &pool};
  TimeAgainstOpenBlas(
      state, 2.0 * kTokens * n * k, threads,
      [&] {
        return MatMul(ctx, {DType::kF32, w.data(), x.data(), y.data(), kTokens, n, k}).ok();
      },
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, kTokens, n, k, 1.0f, x.data(), k,
                    w.data(), k, 0.0f, y_blas.data(), n);
      });
}

// The products of a linear layer y[M][N] = x[M][K]·W[N][K]^T in training.
enum class Product { kForward, kInputGrad, kWeightGrad };

void BenchGemm(benchmark::State& state, Product p, int64_t n, int64_t k, int threads) {
  if (!cpu::Supported()) {
    state.SkipWithError("CPU lacks AVX2/FMA/F16C");
    return;
  }
  const std::vector<float> w = testing::RandomFloats(n * k, 1);         // W [N][K]
  const std::vector<float> x = testing::RandomFloats(kTokens * k, 2);   // x [M][K]
  const std::vector<float> dy = testing::RandomFloats(kTokens * n, 3);  // dy [M][N]
  GemmArgs g;
  switch (p) {
    case Product::kForward:  // y[M][N] = x[M][K] · W[N][K]^T
      g = {false, true, kTokens, n, k, 1.0f, x.data(), k, w.data(), k, 0.0f, nullptr, n};
      break;
    case Product::kInputGrad:  // dx[M][K] = dy[M][N] · W[N][K]
      g = {false, false, kTokens, k, n, 1.0f, dy.data(), n, w.data(), k, 0.0f, nullptr, k};
      break;
    case Product::kWeightGrad:  // dW[N][K] = dy[M][N]^T · x[M][K]
      g = {true, false, n, k, kTokens, 1.0f, dy.data(), n, x.data(), k, 0.0f, nullptr, k};
      break;
  }
  std::vector<float> c(g.m * g.ldc), c_blas(g.m * g.ldc);
  ThreadPool pool(threads);
  const ExecContext ctx{Backend::kCpu, &pool};
  TimeAgainstOpenBlas(
      state, 2.0 * kTokens * n * k, threads,
      [&] {
        GemmArgs ours = g;
        ours.c = c.data();
        return Gemm(ctx, ours).ok();
      },
      [&] {
        cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
                    g.trans_b ? CblasTrans : CblasNoTrans, g.m, g.n, g.k, g.alpha, g.a, g.lda,
                    g.b, g.ldb, g.beta, c_blas.data(), g.ldc);
      });
}

void RegisterAll() {
  benchmark::AddCustomContext("openblas_corename", openblas_get_corename());
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
  benchmark::AddCustomContext("gemm_engine", GemmEngine(ExecContext{Backend::kCpu, nullptr}));
  const int64_t shapes[][2] = {{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
  const std::pair<Product, const char*> products[] = {
      {Product::kForward, "fwd"}, {Product::kInputGrad, "dx"}, {Product::kWeightGrad, "dw"}};
  for (const auto& nk : shapes) {
    for (int threads : {1, 2}) {
      const std::string suffix =
          absl::StrCat("/M:", kTokens, "/N:", nk[0], "/K:", nk[1], "/threads:", threads);
      benchmark::RegisterBenchmark(absl::StrCat("MatMulF32", suffix).c_str(), BenchMatMulF32,
                                   nk[0], nk[1], threads)
          ->UseManualTime()
          ->Iterations(kBlocks);
      for (const auto& [p, name] : products) {
        benchmark::RegisterBenchmark(absl::StrCat("Gemm/", name, suffix).c_str(), BenchGemm, p,
                                     nk[0], nk[1], threads)
            ->UseManualTime()
            ->Iterations(kBlocks);
      }
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
