// The reference kernels checked from first principles, not against another implementation:
// hand-made blocks dequantize to hand-computed values, quantization error stays within half a
// step, matmuls with exactly representable data give exact results, and the layer ops reduce to
// known values in degenerate cases.
#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/half.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"
#include "kernels/reference/reference.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;

TEST(ReferenceDequantize, HandMadeBlocks) {
  float y[kQK];
  BlockQ8_0 q8{};
  q8.d = 0x3800;  // 0.5
  for (int j = 0; j < kQK; ++j) q8.qs[j] = static_cast<int8_t>(j * 8 - 128);
  DequantizeRow(DType::kQ8_0, &q8, y, kQK);
  for (int j = 0; j < kQK; ++j) EXPECT_EQ(y[j], (j * 8 - 128) * 0.5f) << j;

  BlockQ4_0 q4{};
  q4.d = 0x4000;  // 2.0
  std::memset(q4.qs, 0x1F, sizeof(q4.qs));
  q4.qs[3] = 0x80;
  DequantizeRow(DType::kQ4_0, &q4, y, kQK);
  EXPECT_EQ(y[0], 14.0f);    // (15 - 8) * 2
  EXPECT_EQ(y[16], -14.0f);  // (1 - 8) * 2
  EXPECT_EQ(y[3], -16.0f);   // (0 - 8) * 2
  EXPECT_EQ(y[19], 0.0f);    // (8 - 8) * 2

  BlockQ4_1 q41{};
  q41.d = 0x3400;  // 0.25
  q41.m = 0xBC00;  // -1
  std::memset(q41.qs, 0x52, sizeof(q41.qs));
  DequantizeRow(DType::kQ4_1, &q41, y, kQK);
  EXPECT_EQ(y[0], -0.5f);   // 2 * 0.25 - 1
  EXPECT_EQ(y[31], 0.25f);  // 5 * 0.25 - 1

  const uint16_t halves[4] = {0x3C00, 0xC000, 0x0001, 0x7BFF};
  DequantizeRow(DType::kF16, halves, y, 4);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -2.0f);
  EXPECT_EQ(y[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(y[3], 65504.0f);
  const uint16_t bf[2] = {0x3F80, 0xC0A0};
  DequantizeRow(DType::kBF16, bf, y, 2);
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], -5.0f);
}

TEST(ReferenceQuantize, RoundTripErrorWithinHalfAStep) {
  const int64_t k = 4096;
  const std::vector<float> x = RandomFloats(k, 21, -3.0f, 3.0f);
  std::vector<BlockQ8_0> q8(k / kQK);
  std::vector<BlockQ4_1> q41(k / kQK);
  std::vector<float> y8(k), y41(k);
  QuantizeRowQ8_0(x.data(), q8.data(), k);
  QuantizeRowQ4_1(x.data(), q41.data(), k);
  DequantizeRow(DType::kQ8_0, q8.data(), y8.data(), k);
  DequantizeRow(DType::kQ4_1, q41.data(), y41.data(), k);
  for (int64_t b = 0; b < k / kQK; ++b) {
    float amax = 0.0f, mn = x[b * kQK], mx = mn;
    for (int j = 0; j < kQK; ++j) {
      amax = std::max(amax, std::fabs(x[b * kQK + j]));
      mn = std::min(mn, x[b * kQK + j]);
      mx = std::max(mx, x[b * kQK + j]);
    }
    // Half a step, plus the step's own fp16 rounding (2^-11 relative) times up to 127 (15) steps
    // and the minimum's fp16 rounding.
    const float step8 = amax / 127.0f, step4 = (mx - mn) / 15.0f;
    for (int j = 0; j < kQK; ++j) {
      const int64_t i = b * kQK + j;
      EXPECT_LE(std::fabs(y8[i] - x[i]), step8 * (0.5f + 127.0f / 2048.0f)) << i;
      EXPECT_LE(std::fabs(y41[i] - x[i]),
                step4 * (0.5f + 15.0f / 2048.0f) + std::fabs(mn) / 2048.0f)
          << i;
    }
  }
}

TEST(ReferenceMatMul, F32IdentityIsExact) {
  const int64_t m = 3, k = 40;
  const std::vector<float> x = RandomFloats(m * k, 22);
  std::vector<float> w(k * k, 0.0f), y(m * k);
  for (int64_t i = 0; i < k; ++i) w[i * k + i] = 1.0f;
  ASSERT_THAT(reference::MatMul({DType::kF32, w.data(), x.data(), y.data(), m, k, k}), IsOk());
  EXPECT_EQ(y, x);
}

TEST(ReferenceMatMul, QuantizedIntegerDataIsExact) {
  // x holds integers with |max| = 127, so d_x = 1 and x quantizes to itself; weights are Q8_0
  // blocks with d = 1 (fp16 0x3C00) and Q4_1 blocks with d = 1, m = -2. The dot products are
  // then plain integer sums.
  const int64_t k = 64;
  std::vector<float> x(k);
  for (int64_t i = 0; i < k; ++i) x[i] = static_cast<float>((i * 29) % 255 - 127);
  x[10] = 127.0f;
  x[42] = -127.0f;
  std::vector<BlockQ8_0> w8(k / kQK);
  std::vector<BlockQ4_1> w41(k / kQK);
  for (int64_t b = 0; b < k / kQK; ++b) {
    w8[b].d = 0x3C00;
    w41[b].d = 0x3C00;
    w41[b].m = 0xC000;  // -2
    for (int j = 0; j < kQK; ++j) w8[b].qs[j] = static_cast<int8_t>((b * kQK + j) % 9 - 4);
    for (int j = 0; j < kQK / 2; ++j)
      w41[b].qs[j] = static_cast<uint8_t>((j % 16) | ((15 - j) << 4));
  }
  double want8 = 0.0, want41 = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    want8 += w8[i / kQK].qs[i % kQK] * x[i];
    const int j = static_cast<int>(i % kQK);
    const int q = j < 16 ? (j % 16) : (15 - (j - 16));
    want41 += (q - 2.0) * x[i];
  }
  float y = 0.0f;
  ASSERT_THAT(reference::MatMul({DType::kQ8_0, w8.data(), x.data(), &y, 1, 1, k}), IsOk());
  EXPECT_EQ(y, static_cast<float>(want8));
  ASSERT_THAT(reference::MatMul({DType::kQ4_1, w41.data(), x.data(), &y, 1, 1, k}), IsOk());
  EXPECT_EQ(y, static_cast<float>(want41));
}

TEST(ReferenceMatMul, RejectsPartialBlocks) {
  std::vector<float> x(48), y(1);
  std::vector<uint8_t> w(64);
  EXPECT_THAT(reference::MatMul({DType::kQ4_1, w.data(), x.data(), y.data(), 1, 1, 48}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(ReferenceOps, DegenerateCases) {
  // RmsNorm of a constant row is the weight (up to eps).
  std::vector<float> x(8, 2.0f), w(8, 3.0f), y(8);
  reference::RmsNorm({x.data(), w.data(), y.data(), 1, 8, 0.0f});
  for (float v : y) EXPECT_EQ(v, 3.0f);
  // Rope at position 0 is the identity; at position 1 the first pair turns by 1 radian.
  std::vector<float> r = {1.0f, 0.0f, 1.0f, 2.0f};
  const int32_t pos0 = 0, pos1 = 1;
  reference::Rope({r.data(), &pos0, 1, 1, 4, 4, 10000.0f, false});
  EXPECT_EQ(r, (std::vector<float>{1.0f, 0.0f, 1.0f, 2.0f}));
  reference::Rope({r.data(), &pos1, 1, 1, 4, 4, 10000.0f, false});
  EXPECT_FLOAT_EQ(r[0], std::cos(1.0f));
  EXPECT_FLOAT_EQ(r[1], std::sin(1.0f));
  // One key: attention returns its value row. Equal keys: the mean of the values.
  const std::vector<float> q = {0.3f, -0.2f}, k = {1.0f, 1.0f, 1.0f, 1.0f};
  const std::vector<float> v = {1.0f, 2.0f, 3.0f, 6.0f};
  std::vector<float> out(2);
  reference::Attention({q.data(), k.data(), v.data(), out.data(), 1, 0, 1, 1, 2, 1.0f});
  EXPECT_EQ(out, (std::vector<float>{1.0f, 2.0f}));
  reference::Attention({q.data(), k.data(), v.data(), out.data(), 1, 1, 1, 1, 2, 1.0f});
  EXPECT_FLOAT_EQ(out[0], 2.0f);
  EXPECT_FLOAT_EQ(out[1], 4.0f);
  // silu(0) = 0; silu(large) = large.
  const std::vector<float> g = {0.0f, 50.0f}, up = {5.0f, 2.0f};
  std::vector<float> s(2);
  reference::SwiGlu({g.data(), up.data(), s.data(), 2});
  EXPECT_EQ(s[0], 0.0f);
  EXPECT_EQ(s[1], 100.0f);
}

}  // namespace
}  // namespace anvil
