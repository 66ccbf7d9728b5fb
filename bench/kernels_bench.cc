// Microbenchmarks of the CPU kernels at SmolLM2-135M's shapes. MatMul reports weight GB/s for
// decode (M=1, memory bound) and GFLOP/s for a 16-sequence batched decode step (M=16, the
// server's) and prefill (M=512, compute bound), with 1 and 2 threads; MemReadBandwidth (an
// AVX2 sum over 1 GiB, past the L3) is the ceiling the decode numbers are judged against: each
// decode row reports "of_mem_read", its fraction of that ceiling measured once in the same
// process with the same thread count. "cold" variants (M = 1 and 16) rotate through enough
// weight copies (>= 2 GiB; this VM reports a 480 MB L3) that every call reads its weights from
// memory. The F32 prefill shapes against OpenBLAS are in gemm_bench.cc.
//   build/release/bench/kernels_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/layer_ops.h"
#include "kernels/matmul.h"
#include "bench/read_ceiling.h"
#include "tests/testing/kernel_data.h"

namespace anvil {
namespace {

using bench::MemReadBandwidth;

double MemReadCeilingGBps(int threads) { return bench::ReadCeilingGBps(threads); }

// Cost of one ParallelFor round trip with trivial work: the floor under every parallel op, which
// matters for decode where a whole matmul takes tens of microseconds.
void PoolRoundTrip(benchmark::State& state) {
  ThreadPool pool(static_cast<int>(state.range(0)));
  std::vector<int64_t> sink(8);
  for (auto _ : state) {
    pool.ParallelFor(64, 1, [&](int64_t b, int64_t e, int t) { sink[t] += e - b; });
    benchmark::DoNotOptimize(sink.data());
  }
}

struct MatMulCase {
  DType type;
  int64_t m, n, k;
  int threads;
  bool cold;
  MatMulNumerics numerics = MatMulNumerics::kLlamaCpp;
};

void BenchMatMul(benchmark::State& state, MatMulCase c) {
  if (!cpu::Supported()) {
    state.SkipWithError("CPU lacks AVX2/FMA/F16C");
    return;
  }
  const std::vector<uint8_t> w0 =
      testing::MakeWeights(c.type, testing::RandomFloats(c.n * c.k, 1), c.n, c.k);
  const int64_t copies = c.cold ? (int64_t{2048} << 20) / static_cast<int64_t>(w0.size()) + 1 : 1;
  std::vector<std::vector<uint8_t>> w(copies, w0);
  const std::vector<float> x = testing::RandomFloats(c.m * c.k, 2);
  std::vector<float> y(c.m * c.n);
  // Measured before this row's pool exists, so that its spinning workers do not disturb it.
  const double mem_read_gbps = c.m == 1 ? MemReadCeilingGBps(c.threads) : 0.0;
  ThreadPool pool(c.threads);
  int64_t i = 0;
  const auto start = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const MatMulArgs args{c.type, w[i].data(), x.data(), y.data(), c.m, c.n, c.k};
    if (!cpu::MatMul(&pool, args, c.numerics).ok()) state.SkipWithError("matmul failed");
    benchmark::ClobberMemory();
    i = (i + 1) % copies;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto rate = benchmark::Counter::kIsIterationInvariantRate;
  if (c.m == 1) {
    state.counters["GB/s"] = benchmark::Counter(static_cast<double>(w0.size()) * 1e-9, rate);
    // Fraction of the memory-read ceiling: meaningful for the cold rows; warm rows read weights
    // that fit in cache and may exceed 1.
    state.counters["of_mem_read"] = static_cast<double>(w0.size()) *
                                     static_cast<double>(state.iterations()) * 1e-9 / seconds /
                                     mem_read_gbps;
  } else {
    state.counters["GFLOP/s"] =
        benchmark::Counter(2.0 * static_cast<double>(c.m * c.n * c.k) * 1e-9, rate);
  }
}

void BenchAttention(benchmark::State& state, int64_t t, int64_t past, int threads) {
  const int64_t h = 9, h_kv = 3, d = 64, s = past + t;
  const std::vector<float> q = testing::RandomFloats(t * h * d, 1);
  const std::vector<float> k = testing::RandomFloats(s * h_kv * d, 2);
  const std::vector<float> v = testing::RandomFloats(s * h_kv * d, 3);
  std::vector<float> out(t * h * d);
  ThreadPool pool(threads);
  ExecContext ctx{Backend::kCpu, &pool};
  for (auto _ : state) {
    AttentionArgs a{q.data(), k.data(), v.data(), out.data(), t, past, h, h_kv, d, 0.125f};
    if (!Attention(ctx, a).ok()) state.SkipWithError("attention failed");
  }
}

// The decode attention of one batched-decode step as the server runs it: `caches` distinct
// sequence-layer KV caches of `keys` positions (16 sequences x 30 layers of SmolLM2 = 480) in
// 16-row blocks dealt out of order over a pool, one serial call per cache. Layouts: row blocks,
// transposed blocks (keys in lanes, AttentionArgs::blocks_transposed) and transposed F16
// blocks (the server's --kv-type f16). caches == 1 repeats one cache (cache-hot).
enum class KvLayout { kRows, kTransposed, kTransposedF16 };

void BenchAttentionDecodeStep(benchmark::State& state, int64_t caches, int64_t keys,
                              KvLayout layout) {
  const int64_t h = 9, h_kv = 3, d = 64, row = h_kv * d, bt = 16;
  const int64_t per_cache = (keys + bt - 1) / bt, blocks = caches * per_cache;
  const std::vector<float> q = testing::RandomFloats(h * d, 1);
  const std::vector<float> k = testing::RandomFloats(blocks * bt * row, 2);
  const std::vector<float> v = testing::RandomFloats(blocks * bt * row, 3);
  std::vector<uint16_t> k16(k.size()), v16(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    k16[i] = FloatToHalf(k[i]);
    v16[i] = FloatToHalf(v[i]);
  }
  std::vector<const float*> kb(blocks), vb(blocks);
  std::vector<const uint16_t*> kb16(blocks), vb16(blocks);
  for (int64_t b = 0; b < blocks; ++b) {  // cache c's block j at pool slot (j * caches + c)
    const int64_t slot = (b % per_cache) * caches + b / per_cache;
    kb[b] = k.data() + slot * bt * row;
    vb[b] = v.data() + slot * bt * row;
    kb16[b] = k16.data() + slot * bt * row;
    vb16[b] = v16.data() + slot * bt * row;
  }
  std::vector<float> out(h * d);
  const ExecContext serial{Backend::kCpu, nullptr};
  const int64_t calls = 480;
  for (auto _ : state) {
    for (int64_t c = 0; c < calls; ++c) {
      AttentionArgs a{q.data(), nullptr, nullptr, out.data(), 1, keys - 1, h, h_kv, d, 0.125f};
      const int64_t first = (c % caches) * per_cache;
      if (layout == KvLayout::kTransposedF16) {
        a.k_blocks_f16 = kb16.data() + first;
        a.v_blocks_f16 = vb16.data() + first;
      } else {
        a.k_blocks = kb.data() + first;
        a.v_blocks = vb.data() + first;
      }
      a.block_rows = bt;
      a.blocks_transposed = layout != KvLayout::kRows;
      if (!Attention(serial, a).ok()) state.SkipWithError("attention failed");
    }
  }
  state.counters["us_per_call"] = benchmark::Counter(
      static_cast<double>(calls), benchmark::Counter::kIsIterationInvariantRate |
                                      benchmark::Counter::kInvert);
}

void RegisterAll() {
  benchmark::RegisterBenchmark("MemReadBandwidth/threads:1", MemReadBandwidth)
      ->Arg(1)
      ->UseRealTime();
  benchmark::RegisterBenchmark("MemReadBandwidth/threads:2", MemReadBandwidth)
      ->Arg(2)
      ->UseRealTime();
  benchmark::RegisterBenchmark("PoolRoundTrip", PoolRoundTrip)->Arg(2)->UseRealTime();
  const int64_t shapes[][2] = {{576, 576}, {1536, 576}, {576, 1536}, {49152, 576}};
  for (DType type : {DType::kF32, DType::kQ8_0, DType::kQ4_1}) {
    for (int64_t m : {1, 16, 512}) {  // decode, a 16-sequence batched decode step, prefill
      for (const auto& nk : shapes) {
        if (m == 512 && nk[0] == 49152 && type != DType::kQ8_0) continue;  // minutes, not data
        for (int threads : {1, 2}) {
          for (bool cold : {false, true}) {
            if (cold && m == 512) continue;
            const MatMulCase c{type, m, nk[0], nk[1], threads, cold};
            const std::string name =
                absl::StrCat("MatMul/", DTypeName(type), "/M:", m, "/N:", nk[0], "/K:", nk[1],
                             "/threads:", threads, cold ? "/cold" : "");
            benchmark::RegisterBenchmark(name.c_str(), BenchMatMul, c)->UseRealTime();
            if (type != DType::kF32) {  // the server's --matmul fast, same shapes
              MatMulCase f = c;
              f.numerics = MatMulNumerics::kBlockSum;
              benchmark::RegisterBenchmark(absl::StrCat(name, "/blocksum").c_str(), BenchMatMul, f)
                  ->UseRealTime();
            }
          }
        }
      }
    }
  }
  for (int threads : {1, 2}) {
    benchmark::RegisterBenchmark(absl::StrCat("Attention/T:512/past:0/threads:", threads).c_str(),
                                 BenchAttention, 512, 0, threads)
        ->UseRealTime();
    benchmark::RegisterBenchmark(absl::StrCat("Attention/T:1/past:2047/threads:", threads).c_str(),
                                 BenchAttention, 1, 2047, threads)
        ->UseRealTime();
  }
  for (int64_t caches : {1, 480}) {
    for (const auto& [layout, name] : {std::pair{KvLayout::kRows, "rows"},
                                       std::pair{KvLayout::kTransposed, "transposed"},
                                       std::pair{KvLayout::kTransposedF16, "transposed-f16"}}) {
      benchmark::RegisterBenchmark(
          absl::StrCat("AttentionDecodeStep/caches:", caches, "/keys:100/", name).c_str(),
          BenchAttentionDecodeStep, caches, 100, layout)
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
