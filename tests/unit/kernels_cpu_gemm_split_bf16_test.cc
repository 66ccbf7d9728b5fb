// The split-bf16 AMX GEMM (kernels/cpu/gemm_split_bf16.h) against the reference (double sums):
// every transpose combination, alpha/beta (beta == 0 never reads C), padded leading dimensions
// (NaN, never read or written), sizes that are not multiples of the 32 x 32 blocks, of the 256-k
// and 256-row packing blocks, on 1 to 3 threads; its error against plain fp32 sums (the
// accuracy claim: no worse than an fp32 GEMM); and which products it takes. Skips without
// AMX-BF16 (and under ANVIL_NO_AMX, the ctest variant .without_amx).
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/gemm_split_bf16.h"
#include "kernels/gemm.h"
#include "kernels/reference/reference.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::AllClose;
using ::anvil::testing::IsOk;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

#define SKIP_WITHOUT_AMX_BF16() \
  if (!cpu::HasAmxBf16()) GTEST_SKIP() << "no AMX-BF16 (or ANVIL_NO_AMX set)"

// op(X) = values [rows][cols], stored as X (or X^T when trans) with `pad` NaN columns.
struct Operand {
  int64_t ld;
  std::vector<float> data;
};
Operand Store(bool trans, int64_t rows, int64_t cols, int64_t pad,
              const std::vector<float>& values) {
  const int64_t r = trans ? cols : rows, c = trans ? rows : cols;
  Operand o{c + pad, std::vector<float>(static_cast<size_t>(r * (c + pad)), kNaN)};
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      o.data[trans ? j * o.ld + i : i * o.ld + j] = values[i * cols + j];
    }
  }
  return o;
}

struct Case {
  int64_t m, n, k;
  bool ta, tb;
  float alpha, beta;
  int64_t pad;
};

struct Result {
  std::vector<float> c;     // [M][N + pad], padding included
  std::vector<float> want;  // reference, same layout
  std::vector<float> scale; // [M][N]: |alpha| * sum|terms| + |beta * c0|
};

Result RunCase(const Case& t, ThreadPool* pool, uint32_t seed) {
  const std::vector<float> av = RandomFloats(t.m * t.k, seed);
  const std::vector<float> bv = RandomFloats(t.k * t.n, seed + 1);
  const std::vector<float> c0 = RandomFloats(t.m * t.n, seed + 2);
  const Operand a = Store(t.ta, t.m, t.k, t.pad, av), b = Store(t.tb, t.k, t.n, t.pad + 1, bv);
  Result r;
  const int64_t ldc = t.n + t.pad;
  r.c.assign(static_cast<size_t>(t.m * ldc), kNaN);
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < t.n; ++j) {
      r.c[i * ldc + j] = t.beta == 0.0f ? kNaN : c0[i * t.n + j];
    }
  }
  r.want = r.c;
  GemmArgs g{t.ta, t.tb, t.m, t.n, t.k, t.alpha, a.data.data(), a.ld, b.data.data(), b.ld,
             t.beta, r.c.data(), ldc};
  {
    EXPECT_THAT(cpu::SplitBf16Gemm(pool, g), IsOk());
  }
  g.c = r.want.data();
  reference::Gemm(g);
  r.scale.resize(static_cast<size_t>(t.m * t.n));
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < t.n; ++j) {
      double s = 0.0;
      for (int64_t p = 0; p < t.k; ++p) s += std::fabs(av[i * t.k + p] * bv[p * t.n + j]);
      const double bc = t.beta == 0.0f ? 0.0 : std::fabs(t.beta * c0[i * t.n + j]);
      r.scale[i * t.n + j] = static_cast<float>(std::fabs(t.alpha) * s + bc);
    }
  }
  return r;
}

std::vector<float> Unpad(const std::vector<float>& c, int64_t m, int64_t n, int64_t ld) {
  std::vector<float> v;
  for (int64_t i = 0; i < m; ++i) v.insert(v.end(), c.begin() + i * ld, c.begin() + i * ld + n);
  return v;
}

TEST(SplitBf16Gemm, MatchesReference) {
  SKIP_WITHOUT_AMX_BF16();
  struct Shape {
    int64_t m, n, k;
  };
  // Exact blocks; ragged rows, columns and k; several row blocks (M > 256); a long N; two
  // k blocks (K > 768).
  const Shape shapes[] = {{32, 32, 32},   {33, 47, 65},    {64, 96, 257},
                          {100, 70, 300}, {290, 40, 513},  {40, 1000, 64}, {96, 64, 1600}};
  ThreadPool pool1(1), pool2(2), pool3(3);
  ThreadPool* pools[] = {nullptr, &pool1, &pool2, &pool3};
  uint32_t seed = 10;
  for (const Shape& s : shapes) {
    for (int combo = 0; combo < 4; ++combo) {
      // C = AB (accumulated in C's tiles), C += AB (a weight gradient, likewise), and the
      // general case through a scratch block.
      const float alphas[] = {1.0f, 1.0f, 0.75f}, betas[] = {0.0f, 1.0f, -0.5f};
      for (int ab = 0; ab < 3; ++ab) {
        const Case t{s.m, s.n, s.k, (combo & 1) != 0, (combo & 2) != 0, alphas[ab], betas[ab],
                     (combo + s.k) % 3 == 0 ? 0 : 5};
        seed += 3;
        for (ThreadPool* pool : pools) {
          const std::string what = absl::StrCat(
              "M=", t.m, " N=", t.n, " K=", t.k, " trans_a=", t.ta, " trans_b=", t.tb,
              " alpha=", t.alpha, " beta=", t.beta, " pad=", t.pad,
              " threads=", pool == nullptr ? 0 : pool->num_threads());
          const Result r = RunCase(t, pool, seed);
          const int64_t ldc = t.n + t.pad;
          // 2e-6 of sum|terms|: a few fp32 roundings of the total, far below a missing or
          // wrong term (~1/K of it).
          EXPECT_TRUE(AllClose(Unpad(r.c, t.m, t.n, ldc), Unpad(r.want, t.m, t.n, ldc), 0.0,
                               2e-6, &r.scale))
              << what;
          for (int64_t i = 0; i < t.m; ++i) {
            for (int64_t j = t.n; j < ldc; ++j) {
              ASSERT_TRUE(std::isnan(r.c[i * ldc + j])) << what << " padding written at " << i;
            }
          }
        }
      }
    }
  }
}

// The accuracy claim, measured: the RMS of (result - exact) / sum|terms| over a [128][128]
// output with K = 1536 against the same for plain fp32 sums in k order (fma, one rounding per
// term: what a naive fp32 GEMM does; blocked sgemm is somewhat better) and against bf16 inputs
// (what a one-product bf16 GEMM would give: ~2^-9, which the split must beat by far).
TEST(SplitBf16Gemm, ErrorOfAnFp32Gemm) {
  SKIP_WITHOUT_AMX_BF16();
  const Case t{128, 128, 1536, false, false, 1.0f, 0.0f, 0};
  ThreadPool pool(2);
  const Result r = RunCase(t, &pool, 77);
  const std::vector<float> av = RandomFloats(t.m * t.k, 77), bv = RandomFloats(t.k * t.n, 78);
  double split2 = 0.0, fp32_2 = 0.0;
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < t.n; ++j) {
      float acc = 0.0f;
      for (int64_t p = 0; p < t.k; ++p) acc = std::fma(av[i * t.k + p], bv[p * t.n + j], acc);
      const double want = r.want[i * t.n + j], s = r.scale[i * t.n + j];
      split2 += std::pow((r.c[i * t.n + j] - want) / s, 2);
      fp32_2 += std::pow((acc - want) / s, 2);
    }
  }
  const double outputs = static_cast<double>(t.m * t.n);
  const double split_rms = std::sqrt(split2 / outputs), fp32_rms = std::sqrt(fp32_2 / outputs);
  std::printf("relative RMS error, K=1536: split-bf16 %.3g, fp32 sequential fma %.3g\n", split_rms,
              fp32_rms);
  EXPECT_LE(split_rms, fp32_rms);
  EXPECT_GT(split_rms, 0.0);  // it is not the double reference by accident
}

TEST(SplitBf16Gemm, WhichProductsItTakes) {
  SKIP_WITHOUT_AMX_BF16();
  std::vector<float> x(1);
  auto args = [&](int64_t m, int64_t n, int64_t k) {
    return GemmArgs{false, false, m, n, k, 1.0f, x.data(), k, x.data(), n, 0.0f, x.data(), n};
  };
  EXPECT_TRUE(cpu::SplitBf16GemmApplies(args(1024, 576, 576)));
  EXPECT_TRUE(cpu::SplitBf16GemmApplies(args(576, 576, 1024)));   // a weight gradient
  EXPECT_FALSE(cpu::SplitBf16GemmApplies(args(1024, 8, 576)));    // LoRA A: rank 8
  EXPECT_FALSE(cpu::SplitBf16GemmApplies(args(1024, 576, 8)));    // LoRA B
  EXPECT_FALSE(cpu::SplitBf16GemmApplies(args(16, 4096, 4096)));  // too few rows for a tile
  EXPECT_FALSE(cpu::SplitBf16GemmApplies(args(64, 64, 64)));      // too little work
  GemmArgs g = args(32, 32, 32);
  g.alpha = 0.0f;
  EXPECT_THAT(cpu::SplitBf16Gemm(nullptr, g), StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace anvil
