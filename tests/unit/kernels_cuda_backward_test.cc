// CUDA backward ops (kernels/cuda/*_backward.cu via the public dispatching functions) against the
// reference backend on the same host data, within atol + rtol * |ref|: RmsNormBackward (with and
// without dw), AttentionBackward (T=1, GQA groups of 3 and 1, head dims 5 to 128, a few hundred
// tokens), SwiGluBackward (aliased outputs), EmbeddingBackward (repeated ids), CrossEntropy-
// Backward (V=49152, ignored rows, in place), Rope's inverse; and the device-side checks of ids
// and targets. Device tests skip where no GPU exists; the NoDevice test runs everywhere.
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/context.h"
#include "kernels/layer_ops.h"
#include "kernels/layer_ops_backward.h"
#include "tests/testing/cuda_device.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/kernel_data.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::AllClose;
using ::anvil::testing::IsOk;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

const ExecContext kRef{Backend::kReference, nullptr, nullptr};

// Without a cuda::Context every op must refuse, on any machine.
TEST(CudaBackwardNoDevice, EveryOpNeedsAContext) {
  const ExecContext gpu{Backend::kCuda, nullptr, nullptr};
  const auto bad = StatusIs(absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      RmsNormBackward(gpu, RmsNormBackwardArgs{nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4}),
      bad);
  EXPECT_THAT(
      AttentionBackward(gpu, AttentionBackwardArgs{nullptr, nullptr, nullptr, nullptr, nullptr,
                                                   nullptr, nullptr, nullptr, 1, 2, 1, 4}),
      bad);
  EXPECT_THAT(
      SwiGluBackward(gpu, SwiGluBackwardArgs{nullptr, nullptr, nullptr, nullptr, nullptr, 4}), bad);
  EXPECT_THAT(EmbeddingBackward(gpu, EmbeddingBackwardArgs{nullptr, nullptr, nullptr, 1, 2, 4}),
              bad);
  EXPECT_THAT(CrossEntropyBackward(
                  gpu, CrossEntropyBackwardArgs{nullptr, nullptr, nullptr, nullptr, nullptr, 1, 4}),
              bad);
}

class CudaBackward : public testing::CudaDeviceTest {};

double MaxAbs(const std::vector<float>& v) {
  double m = 0.0;
  for (float f : v) m = std::max(m, static_cast<double>(std::fabs(f)));
  return m;
}

// atol relative to the output's largest |ref| (at least `floor`), as kernels_backward_test.cc.
::testing::AssertionResult CloseToRef(const std::vector<float>& got, const std::vector<float>& want,
                                      double rel_atol, double rtol, double floor = 0.0) {
  return AllClose(got, want, rel_atol * std::max(floor, MaxAbs(want)), rtol);
}

TEST_F(CudaBackward, RmsNorm) {
  for (auto [t, c] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 576}, {3, 13}, {17, 577}, {300, 576}}) {
    const std::vector<float> x = RandomFloats(t * c, 1, -3.0f, 3.0f), w = RandomFloats(c, 2);
    const std::vector<float> dy = RandomFloats(t * c, 3);
    std::vector<float> want_dx = RandomFloats(t * c, 4), want_dw = RandomFloats(c, 5);
    cuda::DeviceBuffer dx = Up(want_dx), dw = Up(want_dw), dx2 = Up(want_dx);
    ASSERT_THAT(RmsNormBackward(
                    kRef, {x.data(), w.data(), dy.data(), want_dx.data(), want_dw.data(), t, c}),
                IsOk());
    cuda::DeviceBuffer gx = Up(x), gw = Up(w), gdy = Up(dy);
    ASSERT_THAT(RmsNormBackward(Gpu(), {gx.as<float>(), gw.as<float>(), gdy.as<float>(),
                                        dx.as<float>(), dw.as<float>(), t, c}),
                IsOk());
    const std::string where = "T=" + std::to_string(t) + " C=" + std::to_string(c);
    EXPECT_TRUE(CloseToRef(Down<float>(dx, t * c), want_dx, 1e-6, 1e-5)) << "dx " << where;
    EXPECT_TRUE(CloseToRef(Down<float>(dw, c), want_dw, 1e-6, 1e-5)) << "dw " << where;
    ASSERT_THAT(RmsNormBackward(Gpu(), {gx.as<float>(), gw.as<float>(), gdy.as<float>(),
                                        dx2.as<float>(), nullptr, t, c}),
                IsOk());
    EXPECT_TRUE(CloseToRef(Down<float>(dx2, t * c), want_dx, 1e-6, 1e-5)) << "no dw, " << where;
  }
}

TEST_F(CudaBackward, Attention) {
  struct Case {
    int64_t t, h, h_kv, d;
  };
  for (const Case& c : {Case{1, 9, 3, 64}, Case{2, 3, 1, 8}, Case{17, 6, 2, 64}, Case{33, 3, 3, 5},
                        Case{45, 4, 1, 128}, Case{300, 9, 3, 64}}) {
    const std::vector<float> q = RandomFloats(c.t * c.h * c.d, 6, -2.0f, 2.0f);
    const std::vector<float> k = RandomFloats(c.t * c.h_kv * c.d, 7, -2.0f, 2.0f);
    const std::vector<float> v = RandomFloats(c.t * c.h_kv * c.d, 8);
    const std::vector<float> dout = RandomFloats(c.t * c.h * c.d, 9);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    std::vector<float> out(q.size());
    ASSERT_THAT(Attention(kRef, {q.data(), k.data(), v.data(), out.data(), c.t, 0, c.h, c.h_kv, c.d,
                                 scale}),
                IsOk());
    std::vector<float> want_dq(q.size()), want_dk(k.size()), want_dv(v.size());
    ASSERT_THAT(AttentionBackward(
                    kRef, {q.data(), k.data(), v.data(), out.data(), dout.data(), want_dq.data(),
                           want_dk.data(), want_dv.data(), c.t, c.h, c.h_kv, c.d, scale}),
                IsOk());
    cuda::DeviceBuffer gq = Up(q), gk = Up(k), gv = Up(v), gout = Up(out), gdout = Up(dout);
    cuda::DeviceBuffer gdq = Up(std::vector<float>(q.size(), NAN));
    cuda::DeviceBuffer gdk = Up(std::vector<float>(k.size(), NAN));
    cuda::DeviceBuffer gdv = Up(std::vector<float>(v.size(), NAN));
    ASSERT_THAT(
        AttentionBackward(Gpu(), {gq.as<float>(), gk.as<float>(), gv.as<float>(), gout.as<float>(),
                                  gdout.as<float>(), gdq.as<float>(), gdk.as<float>(),
                                  gdv.as<float>(), c.t, c.h, c.h_kv, c.d, scale}),
        IsOk());
    const std::string where = "T=" + std::to_string(c.t) + " H=" + std::to_string(c.h) +
                              " Hkv=" + std::to_string(c.h_kv) + " D=" + std::to_string(c.d);
    EXPECT_TRUE(CloseToRef(Down<float>(gdq, q.size()), want_dq, 2e-6, 1e-4, 1.0)) << "dq " << where;
    EXPECT_TRUE(CloseToRef(Down<float>(gdk, k.size()), want_dk, 2e-6, 1e-4, 1.0)) << "dk " << where;
    EXPECT_TRUE(CloseToRef(Down<float>(gdv, v.size()), want_dv, 2e-6, 1e-4, 1.0)) << "dv " << where;
  }
}

TEST_F(CudaBackward, SwiGlu) {
  for (int64_t n : {1, 13, 300001}) {
    std::vector<float> gate = RandomFloats(n, 10, -12.0f, 12.0f);
    if (n > 4) gate[3] = -100.0f, gate[4] = 100.0f;
    const std::vector<float> up = RandomFloats(n, 11, -3.0f, 3.0f), dout = RandomFloats(n, 12);
    std::vector<float> want_dg(n), want_du(n);
    ASSERT_THAT(SwiGluBackward(
                    kRef, {gate.data(), up.data(), dout.data(), want_dg.data(), want_du.data(), n}),
                IsOk());
    std::vector<float> scale_g(n), scale_u(n);  // |dout * up|, |dout * gate|: see the CPU test
    for (int64_t i = 0; i < n; ++i) {
      scale_g[i] = std::fabs(dout[i] * up[i]);
      scale_u[i] = std::fabs(dout[i] * gate[i]);
    }
    cuda::DeviceBuffer gg = Up(gate), gu = Up(up), gd = Up(dout), gdu = Up(std::vector<float>(n));
    // dgate aliases dout.
    ASSERT_THAT(SwiGluBackward(Gpu(), {gg.as<float>(), gu.as<float>(), gd.as<float>(),
                                       gd.as<float>(), gdu.as<float>(), n}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(gd, n), want_dg, 1e-30, 2e-6, &scale_g)) << "n=" << n;
    EXPECT_TRUE(AllClose(Down<float>(gdu, n), want_du, 1e-30, 2e-6, &scale_u)) << "n=" << n;
  }
}

TEST_F(CudaBackward, EmbeddingRepeatedIdsAndBadIds) {
  const int64_t v = 7, c = 576;
  const std::vector<int32_t> ids = {3, 0, 3, 6, 3, 1, 0, 2, 5};
  const auto t = static_cast<int64_t>(ids.size());
  const std::vector<float> dy = RandomFloats(t * c, 13);
  std::vector<float> want = RandomFloats(v * c, 14);
  cuda::DeviceBuffer gtable = Up(want), gids = Up(ids), gdy = Up(dy);
  ASSERT_THAT(EmbeddingBackward(kRef, {ids.data(), dy.data(), want.data(), t, v, c}), IsOk());
  ASSERT_THAT(
      EmbeddingBackward(Gpu(), {gids.as<int32_t>(), gdy.as<float>(), gtable.as<float>(), t, v, c}),
      IsOk());
  // Three tokens add into row 3 in some order: within a few ulps of the sums.
  const std::vector<float> got = Down<float>(gtable, v * c);
  EXPECT_TRUE(AllClose(got, want, 1e-6, 1e-6));
  for (int32_t bad : {7, -1}) {
    std::vector<int32_t> bad_ids = ids;
    bad_ids[5] = bad;
    cuda::DeviceBuffer gbad = Up(bad_ids);
    EXPECT_THAT(EmbeddingBackward(
                    Gpu(), {gbad.as<int32_t>(), gdy.as<float>(), gtable.as<float>(), t, v, c}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("token id " + std::to_string(bad) +
                                   " at position 5 is outside [0, 7)")));
  }
  EXPECT_TRUE(AllClose(Down<float>(gtable, v * c), got, 0.0, 0.0)) << "bad ids add nothing";
}

TEST_F(CudaBackward, CrossEntropy) {
  for (auto [t, v] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 7}, {9, 200}, {5, 49152}}) {
    const std::vector<float> logits = RandomFloats(t * v, 15, -20.0f, 20.0f);
    std::vector<int32_t> targets(t);
    for (int64_t i = 0; i < t; ++i) {
      targets[i] = i % 3 == 1 ? -100 : static_cast<int32_t>((i * 7919 + 5) % v);
    }
    const std::vector<float> dloss = RandomFloats(t, 16, -2.0f, 2.0f);
    std::vector<float> loss(t), lse(t), want(t * v);
    ASSERT_THAT(CrossEntropy(kRef, {logits.data(), targets.data(), loss.data(), lse.data(), t, v}),
                IsOk());
    ASSERT_THAT(CrossEntropyBackward(kRef, {logits.data(), lse.data(), targets.data(), dloss.data(),
                                            want.data(), t, v}),
                IsOk());
    cuda::DeviceBuffer gl = Up(logits), glse = Up(lse), gt = Up(targets), gd = Up(dloss);
    // In place: dlogits aliases logits.
    ASSERT_THAT(CrossEntropyBackward(Gpu(), {gl.as<float>(), glse.as<float>(), gt.as<int32_t>(),
                                             gd.as<float>(), gl.as<float>(), t, v}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(gl, t * v), want, 1e-12, 5e-6)) << "T=" << t << " V=" << v;
  }
  const std::vector<float> logits(2 * 4, 0.0f), lse(2, 1.0f), dloss(2, 1.0f);
  const std::vector<int32_t> targets = {-100, 4};
  cuda::DeviceBuffer gl = Up(logits), glse = Up(lse), gt = Up(targets), gd = Up(dloss);
  cuda::DeviceBuffer gout = Up(std::vector<float>(8, 7.0f));
  EXPECT_THAT(CrossEntropyBackward(Gpu(), {gl.as<float>(), glse.as<float>(), gt.as<int32_t>(),
                                           gd.as<float>(), gout.as<float>(), 2, 4}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("target 4 at row 1 is not below V=4")));
}

TEST_F(CudaBackward, RopeInverse) {
  for (bool neox : {false, true}) {
    const int64_t t = 17, h = 3, d = 64;
    const std::vector<float> x = RandomFloats(t * h * d, 17, -2.0f, 2.0f);
    std::vector<int32_t> pos(t);
    for (int64_t i = 0; i < t; ++i) pos[i] = static_cast<int32_t>((i * 37 + 2000) % 4099);
    std::vector<float> want = x;
    ASSERT_THAT(Rope(kRef, {want.data(), pos.data(), t, h, d, d, 10000.0f, neox, true}), IsOk());
    cuda::DeviceBuffer gx = Up(x), gpos = Up(pos);
    RopeArgs args{gx.as<float>(), gpos.as<int32_t>(), t, h, d, d, 10000.0f, neox, true};
    ASSERT_THAT(Rope(Gpu(), args), IsOk());
    EXPECT_TRUE(AllClose(Down<float>(gx, x.size()), want, 1e-6, 1e-6)) << "neox=" << neox;
    args.inverse = false;  // forward after inverse: back to x
    ASSERT_THAT(Rope(Gpu(), args), IsOk());
    EXPECT_TRUE(AllClose(Down<float>(gx, x.size()), x, 1e-6, 0.0)) << "neox=" << neox;
  }
}

}  // namespace
}  // namespace anvil
