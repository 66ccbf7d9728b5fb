// MatMulNumerics::kBlockSum (anvil-server --matmul fast): the CPU tiles against the reference
// in that order, bit for bit, over shapes that are no multiple of the 16-row panel; batch
// invariance (a row gives the same bits alone as inside any M); closeness to llama.cpp's order;
// and the dispatch point carrying the choice. With AMX, whole groups of 16 rows take their block
// sums from tile products and the rest from vpdpbusd, so M = 19 and 21 below mix both, and a row
// alone (vpdpbusd) must equal it batched (AMX). ctest also runs this file with ANVIL_NO_AMX=1 and
// with ANVIL_NO_AVX512=1 (the portable loops).
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"
#include "kernels/reference/reference.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::AllClose;
using ::anvil::testing::BitEqual;
using ::anvil::testing::IsOk;
using ::anvil::testing::MakeWeights;
using ::anvil::testing::RandomFloats;

constexpr MatMulNumerics kFast = MatMulNumerics::kBlockSum;

struct Case {
  DType type;
  int64_t m, n, k;
  std::vector<float> x;    // [M][K]
  std::vector<uint8_t> w;  // [N][K] in type
};

Case MakeCase(DType type, int64_t m, int64_t n, int64_t k, uint32_t seed) {
  Case c{type, m, n, k, RandomFloats(m * k, seed), {}};
  std::vector<float> wf = RandomFloats(n * k, seed + 1);
  // Rows with different offsets and spreads, so Q4_1's minimums and the scales vary.
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < k; ++i) wf[r * k + i] = wf[r * k + i] * (1.0f + r % 5) + 0.2f * (r % 3);
  }
  c.w = MakeWeights(type, wf, n, k);
  return c;
}

std::vector<float> Reference(const Case& c, MatMulNumerics numerics, int64_t row0 = 0,
                             int64_t rows = -1) {
  if (rows < 0) rows = c.m;
  std::vector<float> y(rows * c.n, -1.0f);
  MatMulArgs a{c.type, c.w.data(), c.x.data() + row0 * c.k, y.data(), rows, c.n, c.k};
  EXPECT_THAT(reference::MatMul(a, numerics), IsOk());
  return y;
}

std::vector<float> Cpu(ThreadPool* pool, const Case& c, int64_t row0 = 0, int64_t rows = -1) {
  if (rows < 0) rows = c.m;
  std::vector<float> y(rows * c.n, -1.0f);
  MatMulArgs a{c.type, c.w.data(), c.x.data() + row0 * c.k, y.data(), rows, c.n, c.k};
  EXPECT_THAT(cpu::MatMul(pool, a, kFast), IsOk());
  return y;
}

class BlockSumTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
  }
};

TEST_P(BlockSumTest, CpuEqualsReferenceOverShapes) {
  ThreadPool pool(2);
  uint32_t seed = 11;
  for (int64_t m : {1, 2, 5, 16, 19}) {
    for (int64_t n : {1, 15, 16, 17, 40, 192}) {
      for (int64_t k : {32, 96, 576}) {
        const Case c = MakeCase(GetParam(), m, n, k, seed++);
        const std::vector<float> want = Reference(c, kFast);
        EXPECT_TRUE(BitEqual(Cpu(&pool, c), want))
            << DTypeName(c.type) << " M=" << m << " N=" << n << " K=" << k;
        EXPECT_TRUE(BitEqual(Cpu(nullptr, c), want))
            << DTypeName(c.type) << " M=" << m << " N=" << n << " K=" << k << " serial";
      }
    }
  }
}

// The property the server relies on: a sequence's row gives the same bits whatever batch it
// runs in. Every row of an M = 21 call against its own M = 1 and M = 3 calls.
TEST_P(BlockSumTest, EachRowIsTheSameAloneAndInABatch) {
  ThreadPool pool(2);
  const Case c = MakeCase(GetParam(), 21, 1536, 576, 5);
  const std::vector<float> batch = Cpu(&pool, c);
  for (int64_t r = 0; r < c.m; ++r) {
    const std::vector<float> row(batch.begin() + r * c.n, batch.begin() + (r + 1) * c.n);
    EXPECT_TRUE(BitEqual(Cpu(&pool, c, r, 1), row)) << "row " << r << " alone";
    if (r + 3 <= c.m) {
      const std::vector<float> three = Cpu(&pool, c, r, 3);
      EXPECT_TRUE(BitEqual(std::vector<float>(three.begin(), three.begin() + c.n), row))
          << "row " << r << " first of 3";
    }
  }
}

// Another summation order of the same exact block products: within a few float roundings of
// llama.cpp's order (1e-5 of the sum of |terms|; measured: below 1e-7), and not identical to it
// (so the choice really reaches the kernel).
TEST_P(BlockSumTest, CloseToLlamaCppOrderButNotTheSame) {
  const Case c = MakeCase(GetParam(), 4, 192, 1536, 9);
  const std::vector<float> fast = Reference(c, kFast);
  const std::vector<float> exact = Reference(c, MatMulNumerics::kLlamaCpp);
  std::vector<float> scale(fast.size()), deq(c.k);  // sum over k of |w[n][k] * x[m][k]|
  const int64_t row_bytes = c.k / BlockElems(c.type) * BlockBytes(c.type);
  for (int64_t n = 0; n < c.n; ++n) {
    DequantizeRow(c.type, c.w.data() + n * row_bytes, deq.data(), c.k);
    for (int64_t m = 0; m < c.m; ++m) {
      double s = 0.0;
      for (int64_t e = 0; e < c.k; ++e) s += std::fabs(deq[e] * c.x[m * c.k + e]);
      scale[m * c.n + n] = static_cast<float>(s);
    }
  }
  EXPECT_TRUE(AllClose(fast, exact, 0.0, 1e-5, &scale));
  EXPECT_FALSE(BitEqual(fast, exact));
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, BlockSumTest,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_0, DType::kQ4_1),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

// F32 weights keep vec_dot's order for every M under kBlockSum, so they are batch-invariant too
// (llama.cpp's order switches to tinyBLAS's at M >= 2).
TEST(BlockSum, F32RowsAreTheSameAloneAndInABatch) {
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
  ThreadPool pool(2);
  const Case c = MakeCase(DType::kF32, 8, 64, 576, 3);
  const std::vector<float> batch = Cpu(&pool, c);
  EXPECT_TRUE(BitEqual(batch, Reference(c, kFast)));
  for (int64_t r = 0; r < c.m; ++r) {
    const std::vector<float> row(batch.begin() + r * c.n, batch.begin() + (r + 1) * c.n);
    EXPECT_TRUE(BitEqual(Cpu(&pool, c, r, 1), row)) << "row " << r;
  }
}

// Through the dispatch point: ExecContext::matmul picks the order for MatMul and MatMulShared,
// on the CPU and the reference backends alike.
TEST(BlockSum, ExecContextCarriesTheChoice) {
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
  ThreadPool pool(2);
  const Case c = MakeCase(DType::kQ4_1, 16, 48, 576, 21);
  const Case d = MakeCase(DType::kQ4_1, 16, 32, 576, 22);  // second weights, same x below
  const std::vector<float> want_c = Reference(c, kFast);
  std::vector<float> y1(16 * 48), y2(16 * 32), y3(16 * 48);
  ExecContext cpu_ctx{Backend::kCpu, &pool};
  cpu_ctx.matmul = kFast;
  ExecContext ref_ctx{Backend::kReference, nullptr};
  ref_ctx.matmul = kFast;
  const MatMulArgs calls[2] = {{c.type, c.w.data(), c.x.data(), y1.data(), 16, 48, 576},
                               {d.type, d.w.data(), c.x.data(), y2.data(), 16, 32, 576}};
  ASSERT_THAT(MatMulShared(cpu_ctx, calls), IsOk());
  EXPECT_TRUE(BitEqual(y1, want_c));
  ASSERT_THAT(MatMul(ref_ctx, {c.type, c.w.data(), c.x.data(), y3.data(), 16, 48, 576}), IsOk());
  EXPECT_TRUE(BitEqual(y3, want_c));
  // The default context keeps llama.cpp's order.
  ExecContext exact{Backend::kCpu, &pool};
  ASSERT_THAT(MatMul(exact, {c.type, c.w.data(), c.x.data(), y3.data(), 16, 48, 576}), IsOk());
  EXPECT_TRUE(BitEqual(y3, Reference(c, MatMulNumerics::kLlamaCpp)));
}

}  // namespace
}  // namespace anvil
