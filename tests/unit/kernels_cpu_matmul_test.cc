// CPU matmul against the reference over every weight DType and awkward shapes (M, N not
// multiples of the register tiles, K of 1 to 48 blocks): bit-identical for F32 (both summation
// orders) and the quantized types, within tolerance for F16/BF16. Also the activation
// quantizers' bit-identity, thread-count independence and argument errors.
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/core/half.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul_kernels.h"
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
using ::anvil::testing::StatusIs;

#define SKIP_WITHOUT_AVX2() \
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C"

struct Problem {
  DType type;
  int64_t m, n, k;
  std::vector<float> x;      // [M][K]
  std::vector<uint8_t> w;    // [N][K] in type
  std::vector<float> want;   // [M][N] from the reference
  std::vector<float> scale;  // [M][N] sum over k of |w[n][k] * x[m][k]|
};

Problem MakeProblem(DType type, int64_t m, int64_t n, int64_t k, uint32_t seed) {
  Problem p{type, m, n, k, RandomFloats(m * k, seed), {}, {}, {}};
  // Weights with a per-row offset and spread, so Q4_1's minimum and the scales vary.
  std::vector<float> wf = RandomFloats(n * k, seed + 1);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t i = 0; i < k; ++i) wf[r * k + i] = wf[r * k + i] * (1.0f + r % 7) + 0.1f * (r % 3);
  }
  p.w = MakeWeights(type, wf, n, k);
  p.want.assign(m * n, 0.0f);
  MatMulArgs args{type, p.w.data(), p.x.data(), p.want.data(), m, n, k};
  EXPECT_THAT(reference::MatMul(args), IsOk());
  std::vector<float> deq(k);
  p.scale.assign(m * n, 0.0f);
  const int64_t row_bytes = k / BlockElems(type) * BlockBytes(type);
  for (int64_t r = 0; r < n; ++r) {
    DequantizeRow(type, p.w.data() + r * row_bytes, deq.data(), k);
    for (int64_t i = 0; i < m; ++i) {
      double s = 0.0;
      for (int64_t e = 0; e < k; ++e) s += std::fabs(deq[e] * p.x[i * k + e]);
      p.scale[i * n + r] = static_cast<float>(s);
    }
  }
  return p;
}

// F32 and the quantized types follow the reference's (llama.cpp's) summation order exactly;
// F16/BF16 sum in another order than the reference's double and get a tolerance.
::testing::AssertionResult Matches(const std::vector<float>& got, const Problem& p) {
  if (p.type == DType::kF16 || p.type == DType::kBF16) {
    return AllClose(got, p.want, 1e-6, 1e-5, &p.scale);
  }
  return BitEqual(got, p.want);
}

std::vector<float> RunCpu(ThreadPool* pool, const Problem& p) {
  std::vector<float> y(p.m * p.n, -1.0f);
  MatMulArgs args{p.type, p.w.data(), p.x.data(), y.data(), p.m, p.n, p.k};
  EXPECT_THAT(cpu::MatMul(pool, args), IsOk());
  return y;
}

class CpuMatMulTest : public ::testing::TestWithParam<DType> {};

TEST_P(CpuMatMulTest, MatchesReferenceOverShapes) {
  SKIP_WITHOUT_AVX2();
  ThreadPool pool(2);
  const DType type = GetParam();
  uint32_t seed = 1;
  for (int64_t m : {1, 3, 17, 64}) {
    for (int64_t n : {1, 5, 33, 576}) {
      for (int64_t k : {32, 96, 576, 1536}) {
        if (m * n * k > 64 * 576 * 576) continue;  // keep the reference run short
        const Problem p = MakeProblem(type, m, n, k, seed++);
        EXPECT_TRUE(Matches(RunCpu(&pool, p), p))
            << DTypeName(type) << " M=" << m << " N=" << n << " K=" << k;
      }
    }
  }
  // The largest decode and prefill-like shapes, once each.
  for (auto [m, n, k] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 1536, 576}, {1, 576, 1536}, {20, 1536, 576}}) {
    const Problem p = MakeProblem(type, m, n, k, seed++);
    EXPECT_TRUE(Matches(RunCpu(&pool, p), p))
        << DTypeName(type) << " M=" << m << " N=" << n << " K=" << k;
  }
}

// K that is no multiple of the vector width: only float weights allow it (quantized rows are
// whole 32-blocks).
class CpuMatMulFloatTest : public ::testing::TestWithParam<DType> {};

TEST_P(CpuMatMulFloatTest, OddK) {
  SKIP_WITHOUT_AVX2();
  for (int64_t k : {1, 7, 13, 100}) {
    const Problem p = MakeProblem(GetParam(), 5, 9, k, 77);
    EXPECT_TRUE(Matches(RunCpu(nullptr, p), p)) << "K=" << k;
  }
}

INSTANTIATE_TEST_SUITE_P(FloatTypes, CpuMatMulFloatTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST_P(CpuMatMulTest, SameResultWithOneTwoThreeThreads) {
  SKIP_WITHOUT_AVX2();
  for (int64_t m : {1, 17, 200}) {
    const Problem p = MakeProblem(GetParam(), m, 101, 96, 5);
    ThreadPool one(1), two(2), three(3);
    const std::vector<float> y1 = RunCpu(&one, p);
    EXPECT_TRUE(BitEqual(RunCpu(&two, p), y1)) << "M=" << m;
    EXPECT_TRUE(BitEqual(RunCpu(&three, p), y1)) << "M=" << m;
    EXPECT_TRUE(BitEqual(RunCpu(nullptr, p), y1)) << "M=" << m;
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CpuMatMulTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                           DType::kQ4_0, DType::kQ4_1),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(CpuMatMul, DispatchRejectsKNotMultipleOfBlock) {
  SKIP_WITHOUT_AVX2();
  std::vector<float> x(48), y(1);
  std::vector<uint8_t> w(1024);
  ExecContext ctx{Backend::kCpu, nullptr};
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    MatMulArgs args{t, w.data(), x.data(), y.data(), 1, 1, 48};
    EXPECT_THAT(MatMul(ctx, args), StatusIs(absl::StatusCode::kInvalidArgument)) << DTypeName(t);
  }
  MatMulArgs null_w{DType::kF32, nullptr, x.data(), y.data(), 1, 1, 48};
  EXPECT_THAT(MatMul(ctx, null_w), StatusIs(absl::StatusCode::kInvalidArgument));
}

// Three weight matrices against the same x in one call give each one's own MatMul bits (the
// reference's), with the shared activations prepared once.
TEST(CpuMatMul, SharedActivationsEqualSeparateCalls) {
  SKIP_WITHOUT_AVX2();
  ThreadPool pool(2);
  for (DType t : {DType::kF32, DType::kF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    for (int64_t m : {1, 5, 16, 100}) {
      const Problem a = MakeProblem(t, m, 72, 96, 40), b = MakeProblem(t, m, 24, 96, 41),
                    c = MakeProblem(t, m, 9, 96, 42);
      // One x for all three (a's); separate calls give the wanted bits.
      std::vector<float> want_b(m * b.n), want_c(m * c.n), ya(m * a.n), yb(want_b.size()),
          yc(want_c.size());
      ExecContext ctx{Backend::kCpu, &pool};
      ASSERT_THAT(MatMul(ctx, {t, b.w.data(), a.x.data(), want_b.data(), m, b.n, 96}), IsOk());
      ASSERT_THAT(MatMul(ctx, {t, c.w.data(), a.x.data(), want_c.data(), m, c.n, 96}), IsOk());
      const MatMulArgs calls[] = {{t, a.w.data(), a.x.data(), ya.data(), m, a.n, 96},
                                  {t, b.w.data(), a.x.data(), yb.data(), m, b.n, 96},
                                  {t, c.w.data(), a.x.data(), yc.data(), m, c.n, 96}};
      ASSERT_THAT(MatMulShared(ctx, calls), IsOk());
      const std::string label = std::string(DTypeName(t)) + " M=" + std::to_string(m);
      EXPECT_TRUE(Matches(ya, a)) << label;
      EXPECT_TRUE(BitEqual(yb, want_b)) << label;
      EXPECT_TRUE(BitEqual(yc, want_c)) << label;
    }
  }
  std::vector<float> x(64), other(64), y(2);
  std::vector<uint8_t> w(1024);
  const MatMulArgs mixed[] = {{DType::kQ8_0, w.data(), x.data(), y.data(), 1, 1, 32},
                              {DType::kQ8_0, w.data(), other.data(), y.data() + 1, 1, 1, 32}};
  EXPECT_THAT(MatMulShared({Backend::kCpu, nullptr}, mixed),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(MatMulShared({Backend::kReference, nullptr}, mixed),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(CpuMatMul, EmptyShapesAreOk) {
  SKIP_WITHOUT_AVX2();
  std::vector<float> x(64), y(4, 7.0f);
  std::vector<uint8_t> w(1024);
  EXPECT_THAT(cpu::MatMul(nullptr, {DType::kQ4_1, w.data(), x.data(), y.data(), 0, 4, 32}), IsOk());
  EXPECT_THAT(cpu::MatMul(nullptr, {DType::kQ4_1, w.data(), x.data(), y.data(), 2, 0, 32}), IsOk());
  EXPECT_EQ(y[0], 7.0f);
}

// Rows that exercise the quantizers' edge cases: exact .5 products (amax 127 gives id = 1, so
// ties must round to even), zeros, tiny and huge magnitudes, a single nonzero, negative maxima.
std::vector<std::vector<float>> QuantizerRows() {
  std::vector<std::vector<float>> rows;
  std::vector<float> halves(64);
  for (int i = 0; i < 64; ++i) halves[i] = (i % 2 ? -1.0f : 1.0f) * (0.5f + (i * 37 % 126));
  halves[0] = 127.0f;
  halves[40] = -127.0f;
  rows.push_back(halves);
  rows.push_back(std::vector<float>(64, 0.0f));
  std::vector<float> one(64, 0.0f);
  one[17] = -3e-5f;
  rows.push_back(one);
  for (uint32_t s = 0; s < 200; ++s) {
    const float mag = std::ldexp(1.0f, static_cast<int>(s % 40) - 20);
    rows.push_back(RandomFloats(64 + 32 * (s % 5), 1000 + s, -mag, mag));
  }
  // Multiples of d/2 with d = amax/127 for several amax: x*id lands on or next to .5.
  for (float amax : {1.0f, 3.0f, 0.1f, 1000.0f}) {
    std::vector<float> r(96);
    for (int i = 0; i < 96; ++i) r[i] = amax / 127.0f * (static_cast<float>(i % 255) - 127.0f) / 2;
    r[5] = amax;
    rows.push_back(r);
  }
  return rows;
}

TEST(CpuQuantize, Q8_0IsBitIdenticalToReference) {
  SKIP_WITHOUT_AVX2();
  for (const auto& row : QuantizerRows()) {
    const int64_t k = static_cast<int64_t>(row.size()), nb = k / kQK;
    std::vector<BlockQ8_0> want(nb);
    QuantizeActivationQ8_0(row.data(), want.data(), k);
    std::vector<int8_t> qs(k);
    std::vector<float> d(nb);
    cpu::QuantizeActsQ8_0(row.data(), k, qs.data(), d.data());
    for (int64_t b = 0; b < nb; ++b) {
      ASSERT_EQ(std::memcmp(qs.data() + b * kQK, want[b].qs, kQK), 0) << "block " << b;
      ASSERT_EQ(FloatBits(d[b]), FloatBits(HalfToFloat(want[b].d))) << "block " << b;
    }
  }
}

TEST(CpuQuantize, Q8_1IsBitIdenticalToReference) {
  SKIP_WITHOUT_AVX2();
  for (const auto& row : QuantizerRows()) {
    const int64_t k = static_cast<int64_t>(row.size()), nb = k / kQK;
    std::vector<BlockQ8_1> want(nb);
    QuantizeActivationQ8_1(row.data(), want.data(), k);
    std::vector<int8_t> qs(k);
    std::vector<float> d(nb), s(nb);
    cpu::QuantizeActsQ8_1(row.data(), k, qs.data(), d.data(), s.data());
    for (int64_t b = 0; b < nb; ++b) {
      ASSERT_EQ(std::memcmp(qs.data() + b * kQK, want[b].qs, kQK), 0) << "block " << b;
      ASSERT_EQ(FloatBits(d[b]), FloatBits(HalfToFloat(want[b].d))) << "block " << b;
      ASSERT_EQ(FloatBits(s[b]), FloatBits(HalfToFloat(want[b].s))) << "block " << b;
    }
  }
}

TEST(CpuQuantize, F16AndBf16RoundingMatchScalar) {
  SKIP_WITHOUT_AVX2();
  std::vector<float> x = RandomFloats(203, 9, -70000.0f, 70000.0f);
  for (int i = 0; i < 40; ++i) x[i] = std::ldexp(1.0f + i / 64.0f, -14 - i);  // subnormal halves
  x[50] = INFINITY;
  x[51] = -65520.0f;
  std::vector<float> f16(x.size()), bf16(x.size());
  cpu::RoundActsF16(x.data(), static_cast<int64_t>(x.size()), f16.data());
  cpu::RoundActsBf16(x.data(), static_cast<int64_t>(x.size()), bf16.data());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(FloatBits(f16[i]), FloatBits(HalfToFloat(FloatToHalf(x[i])))) << i << " " << x[i];
    EXPECT_EQ(FloatBits(bf16[i]), FloatBits(Bf16ToFloat(FloatToBf16(x[i])))) << i << " " << x[i];
  }
}

}  // namespace
}  // namespace anvil
