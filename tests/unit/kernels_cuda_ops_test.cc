// CUDA layer and training ops (kernels/cuda/*.cu via the public dispatching functions) against
// the reference backend on the same host data, within atol + rtol * |ref|, over awkward shapes:
// T=1, sizes that are not multiples of a warp or block, V=49152, attention decode over a long
// cache, chunked prefill, GQA groups of 1 to 4, head dims from 3 to 128 (multiples of 4 take
// the vectorized path, others the scalar one); GetRows for every DType;
// device-side checks of token ids and targets. Device tests skip where no GPU exists; the
// NoDevice tests run everywhere.

#include <cmath>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/adamw.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/context.h"
#include "kernels/layer_ops.h"
#include "kernels/softmax.h"
#include "tests/testing/cuda_device.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/kernel_data.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::AllClose;
using ::anvil::testing::IsOk;
using ::anvil::testing::MakeWeights;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

const ExecContext kRef{Backend::kReference, nullptr, nullptr};

// Without a cuda::Context every op must refuse, on any machine.
TEST(CudaOpsNoDevice, EveryOpNeedsAContext) {
  const ExecContext gpu{Backend::kCuda, nullptr, nullptr};
  const auto bad = StatusIs(absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(RmsNorm(gpu, RmsNormArgs{nullptr, nullptr, nullptr, 1, 4}), bad);
  EXPECT_THAT(Rope(gpu, RopeArgs{nullptr, nullptr, 1, 1, 4, 4}), bad);
  EXPECT_THAT(Attention(gpu, AttentionArgs{nullptr, nullptr, nullptr, nullptr, 1, 0, 2, 1, 4}),
              bad);
  EXPECT_THAT(SwiGlu(gpu, SwiGluArgs{nullptr, nullptr, nullptr, 4}), bad);
  EXPECT_THAT(AddInPlace(gpu, nullptr, nullptr, 4), bad);
  EXPECT_THAT(GetRows(gpu, GetRowsArgs{DType::kF32, nullptr, nullptr, nullptr, 1, 2, 4}), bad);
  EXPECT_THAT(Softmax(gpu, SoftmaxArgs{nullptr, nullptr, 1, 4}), bad);
  EXPECT_THAT(LogSumExp(gpu, LogSumExpArgs{nullptr, nullptr, 1, 4}), bad);
  EXPECT_THAT(CrossEntropy(gpu, CrossEntropyArgs{nullptr, nullptr, nullptr, nullptr, 1, 4}), bad);
  EXPECT_THAT(AdamW(gpu, AdamWArgs{nullptr, nullptr, nullptr, nullptr, 4}), bad);
}

class CudaOps : public testing::CudaDeviceTest {};

TEST_F(CudaOps, RmsNorm) {
  for (auto [t, c] : {std::pair<int64_t, int64_t>{1, 576}, {3, 13}, {17, 577}, {64, 576},
                      {2, 49152}}) {
    const std::vector<float> x = RandomFloats(t * c, 3, -4.0f, 4.0f), w = RandomFloats(c, 4);
    std::vector<float> want(t * c);
    ASSERT_THAT(RmsNorm(kRef, {x.data(), w.data(), want.data(), t, c, 1e-5f}), IsOk());
    cuda::DeviceBuffer dx = Up(x), dw = Up(w), dy = Up(std::vector<float>(t * c));
    ASSERT_THAT(RmsNorm(Gpu(), {dx.as<float>(), dw.as<float>(), dy.as<float>(), t, c, 1e-5f}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dy, t * c), want, 1e-6, 1e-6)) << "T=" << t << " C=" << c;
    // In place (y aliases x).
    ASSERT_THAT(RmsNorm(Gpu(), {dx.as<float>(), dw.as<float>(), dx.as<float>(), t, c, 1e-5f}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dx, t * c), want, 1e-6, 1e-6)) << "in place, C=" << c;
  }
}

TEST_F(CudaOps, Rope) {
  struct Case {
    int64_t t, h, d, n_rot;
    bool neox;
  };
  for (const Case& c :
       {Case{1, 9, 64, 64, false}, Case{17, 3, 64, 64, false}, Case{5, 2, 64, 64, true},
        Case{4, 3, 24, 16, false}, Case{4, 3, 40, 28, true}, Case{64, 9, 64, 64, true},
        Case{2, 1, 6, 6, false}, Case{3, 4, 128, 128, true}}) {
    const std::vector<float> x = RandomFloats(c.t * c.h * c.d, 5, -2.0f, 2.0f);
    std::vector<int32_t> pos(c.t);
    for (int64_t i = 0; i < c.t; ++i) pos[i] = static_cast<int32_t>((i * 37 + 2000) % 4099);
    std::vector<float> want = x;
    ASSERT_THAT(Rope(kRef, {want.data(), pos.data(), c.t, c.h, c.d, c.n_rot, 10000.0f, c.neox}),
                IsOk());
    cuda::DeviceBuffer dx = Up(x), dpos = Up(pos);
    ASSERT_THAT(Rope(Gpu(), {dx.as<float>(), dpos.as<int32_t>(), c.t, c.h, c.d, c.n_rot, 10000.0f,
                             c.neox}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dx, x.size()), want, 1e-6, 1e-6))
        << "T=" << c.t << " H=" << c.h << " D=" << c.d << " n_rot=" << c.n_rot
        << " neox=" << c.neox;
  }
}

TEST_F(CudaOps, SwiGluAndAdd) {
  // Gates out to where exp over/underflows, plus random ones; an odd length for the tails.
  std::vector<float> gate;
  for (float g = -300.0f; g <= 300.0f; g += 0.0137f) gate.push_back(g);
  const std::vector<float> more = RandomFloats(100003, 6, -12.0f, 12.0f);
  gate.insert(gate.end(), more.begin(), more.end());
  const auto n = static_cast<int64_t>(gate.size());
  const std::vector<float> up = RandomFloats(n, 7, 0.5f, 2.0f);
  std::vector<float> want(n);
  ASSERT_THAT(SwiGlu(kRef, {gate.data(), up.data(), want.data(), n}), IsOk());
  cuda::DeviceBuffer dg = Up(gate), du = Up(up), dout = Up(std::vector<float>(n));
  ASSERT_THAT(SwiGlu(Gpu(), {dg.as<float>(), du.as<float>(), dout.as<float>(), n}), IsOk());
  EXPECT_TRUE(AllClose(Down<float>(dout, n), want, 1e-30, 1e-6));
  // Misaligned by one float (the scalar path), in place over the gate.
  ASSERT_THAT(SwiGlu(Gpu(), {dg.as<float>() + 1, du.as<float>() + 1, dg.as<float>() + 1, n - 1}),
              IsOk());
  const std::vector<float> got = Down<float>(dg, n);
  EXPECT_TRUE(AllClose(std::vector<float>(got.begin() + 1, got.end()),
                       std::vector<float>(want.begin() + 1, want.end()), 1e-30, 1e-6));

  for (int64_t len : {1, 7, 576, 300001}) {
    const std::vector<float> x = RandomFloats(len, 8);
    std::vector<float> y = RandomFloats(len, 9), want_y = y;
    ASSERT_THAT(AddInPlace(kRef, want_y.data(), x.data(), len), IsOk());
    cuda::DeviceBuffer dx = Up(x), dy = Up(y);
    ASSERT_THAT(AddInPlace(Gpu(), dy.as<float>(), dx.as<float>(), len), IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dy, len), want_y, 0.0, 0.0)) << "n=" << len;
    if (len < 2) continue;
    // Misaligned: y[1..] += x[1..] on a fresh copy.
    cuda::DeviceBuffer dy2 = Up(y);
    ASSERT_THAT(AddInPlace(Gpu(), dy2.as<float>() + 1, dx.as<float>() + 1, len - 1), IsOk());
    std::vector<float> want2 = want_y;
    want2[0] = y[0];
    EXPECT_TRUE(AllClose(Down<float>(dy2, len), want2, 0.0, 0.0)) << "misaligned n=" << len;
  }
}

TEST_F(CudaOps, GetRowsEveryType) {
  const int64_t v = 50;
  const std::vector<int32_t> ids = {0, 49, 7, 7, 23, 1, 48, 30, 2, 11, 12, 13, 14, 15, 16};
  const auto t = static_cast<int64_t>(ids.size());
  cuda::DeviceBuffer dids = Up(ids);
  for (DType type :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    for (int64_t c : {32, 576, 1056}) {
      const std::vector<uint8_t> table = MakeWeights(type, RandomFloats(v * c, 10, -3, 3), v, c);
      std::vector<float> want(t * c);
      ASSERT_THAT(GetRows(kRef, {type, table.data(), ids.data(), want.data(), t, v, c}), IsOk());
      cuda::DeviceBuffer dtable = Up(table), dout = Up(std::vector<float>(t * c));
      ASSERT_THAT(GetRows(Gpu(), {type, dtable.data(), dids.as<int32_t>(), dout.as<float>(), t,
                                  v, c}),
                  IsOk());
      EXPECT_TRUE(AllClose(Down<float>(dout, t * c), want, 0.0, 0.0))
          << DTypeName(type) << " C=" << c;
    }
  }
  // Float types allow any C; a large vocabulary reaches its last row.
  for (auto [type, vv, c] : {std::tuple<DType, int64_t, int64_t>{DType::kF16, 3, 13},
                             {DType::kF32, 49152, 64}, {DType::kBF16, 49152, 13}}) {
    const std::vector<uint8_t> table = MakeWeights(type, RandomFloats(vv * c, 11), vv, c);
    const std::vector<int32_t> big_ids = {static_cast<int32_t>(vv - 1), 0, 2};
    std::vector<float> want(3 * c);
    ASSERT_THAT(GetRows(kRef, {type, table.data(), big_ids.data(), want.data(), 3, vv, c}),
                IsOk());
    cuda::DeviceBuffer dtable = Up(table), dbig = Up(big_ids), dout = Up(std::vector<float>(3 * c));
    ASSERT_THAT(GetRows(Gpu(), {type, dtable.data(), dbig.as<int32_t>(), dout.as<float>(), 3, vv,
                                c}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dout, 3 * c), want, 0.0, 0.0))
        << DTypeName(type) << " V=" << vv << " C=" << c;
  }
}

TEST_F(CudaOps, GetRowsRejectsBadIdsOnDevice) {
  const int64_t v = 50, c = 32;
  const std::vector<uint8_t> table =
      MakeWeights(DType::kQ8_0, RandomFloats(v * c, 12), v, c);
  cuda::DeviceBuffer dtable = Up(table), dout = Up(std::vector<float>(4 * c));
  for (const auto& [ids, msg] :
       {std::pair<std::vector<int32_t>, std::string>{{3, 50, -1, 2}, "token id 50 at position 1"},
        {{3, 4, -7, 99}, "token id -7 at position 2"}}) {
    cuda::DeviceBuffer dids = Up(ids);
    EXPECT_THAT(GetRows(Gpu(), {DType::kQ8_0, dtable.data(), dids.as<int32_t>(), dout.as<float>(),
                                4, v, c}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(msg)));
  }
  // The context still works afterwards.
  const std::vector<int32_t> good = {1, 2, 3, 4};
  cuda::DeviceBuffer dgood = Up(good);
  EXPECT_THAT(GetRows(Gpu(), {DType::kQ8_0, dtable.data(), dgood.as<int32_t>(), dout.as<float>(),
                              4, v, c}),
              IsOk());
  // Shapes the kernels cannot take.
  EXPECT_THAT(GetRows(Gpu(), {DType::kQ4_0, dtable.data(), dgood.as<int32_t>(), dout.as<float>(),
                              4, v, 33}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

struct AttnCase {
  int64_t t, past, h, h_kv, d;
};

TEST_F(CudaOps, Attention) {
  for (const AttnCase& c :
       {AttnCase{1, 2047, 9, 3, 64}, AttnCase{37, 0, 9, 3, 64}, AttnCase{64, 100, 9, 3, 64},
        AttnCase{1, 0, 9, 3, 64}, AttnCase{1, 2047, 6, 6, 64}, AttnCase{64, 100, 4, 4, 64},
        AttnCase{37, 0, 9, 3, 40}, AttnCase{1, 2047, 6, 2, 40}, AttnCase{64, 100, 6, 6, 40},
        AttnCase{17, 5, 4, 1, 100}, AttnCase{1, 5000, 9, 3, 64}, AttnCase{33, 0, 12, 2, 32},
        AttnCase{5, 60, 4, 2, 128}, AttnCase{300, 1000, 2, 2, 64}, AttnCase{3, 2, 2, 2, 3},
        AttnCase{200, 0, 9, 3, 64}, AttnCase{9, 20, 4, 2, 66}, AttnCase{1, 300, 2, 1, 18}}) {
    const int64_t s = c.past + c.t;
    const std::vector<float> q = RandomFloats(c.t * c.h * c.d, 12, -2.0f, 2.0f);
    const std::vector<float> k = RandomFloats(s * c.h_kv * c.d, 13, -2.0f, 2.0f);
    const std::vector<float> v = RandomFloats(s * c.h_kv * c.d, 14);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    std::vector<float> want(q.size());
    ASSERT_THAT(Attention(kRef, {q.data(), k.data(), v.data(), want.data(), c.t, c.past, c.h,
                                 c.h_kv, c.d, scale}),
                IsOk());
    cuda::DeviceBuffer dq = Up(q), dk = Up(k), dv = Up(v), dout = Up(std::vector<float>(q.size()));
    ASSERT_THAT(Attention(Gpu(), {dq.as<float>(), dk.as<float>(), dv.as<float>(),
                                  dout.as<float>(), c.t, c.past, c.h, c.h_kv, c.d, scale}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dout, q.size()), want, 2e-5, 2e-4))
        << "T=" << c.t << " past=" << c.past << " H=" << c.h << " Hkv=" << c.h_kv
        << " D=" << c.d;
  }
}

TEST_F(CudaOps, AttentionRejectsHeadDimAbove128) {
  cuda::DeviceBuffer buf = Up(std::vector<float>(4 * 136));
  float* p = buf.as<float>();
  EXPECT_THAT(Attention(Gpu(), {p, p, p, p, 1, 0, 2, 2, 136, 1.0f}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("D=136")));
}

TEST_F(CudaOps, SoftmaxAndLogSumExp) {
  for (auto [rows, cols, scale] : {std::tuple<int64_t, int64_t, float>{1, 13, 1.0f},
                                   {5, 577, 0.5f}, {3, 49152, 1.0f}, {300, 64, 2.0f}}) {
    std::vector<float> x = RandomFloats(rows * cols, 15, -10.0f, 10.0f);
    // Masked entries, and (when there are several rows) a fully masked row (NaN).
    for (int64_t c = 0; c < cols; c += 3) x[c] = -INFINITY;
    if (rows > 1) {
      for (int64_t c = 0; c < cols; ++c) x[cols + c] = -INFINITY;
    }
    std::vector<float> want(rows * cols), want_lse(rows);
    ASSERT_THAT(Softmax(kRef, {x.data(), want.data(), rows, cols, scale}), IsOk());
    ASSERT_THAT(LogSumExp(kRef, {x.data(), want_lse.data(), rows, cols}), IsOk());
    cuda::DeviceBuffer dx = Up(x), dy = Up(std::vector<float>(rows * cols)),
                       dlse = Up(std::vector<float>(rows));
    ASSERT_THAT(Softmax(Gpu(), {dx.as<float>(), dy.as<float>(), rows, cols, scale}), IsOk());
    ASSERT_THAT(LogSumExp(Gpu(), {dx.as<float>(), dlse.as<float>(), rows, cols}), IsOk());
    const std::string label = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols);
    EXPECT_TRUE(AllClose(Down<float>(dy, rows * cols), want, 1e-9, 1e-5)) << label;
    EXPECT_TRUE(AllClose(Down<float>(dlse, rows), want_lse, 2e-6, 1e-6)) << label;
    // In place.
    ASSERT_THAT(Softmax(Gpu(), {dx.as<float>(), dx.as<float>(), rows, cols, scale}), IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dx, rows * cols), want, 1e-9, 1e-5)) << "in place " << label;
  }
}

TEST_F(CudaOps, CrossEntropy) {
  for (auto [v, targets] : {std::pair<int64_t, std::vector<int32_t>>{
                                49152, {5, -100, 49151, 0, -1, 123, 77}},
                            {13, {12, 0, -100}}, {577, {576}}}) {
    const auto t = static_cast<int64_t>(targets.size());
    const std::vector<float> logits = RandomFloats(t * v, 16, -8.0f, 8.0f);
    std::vector<float> want_loss(t), want_lse(t);
    ASSERT_THAT(CrossEntropy(kRef, {logits.data(), targets.data(), want_loss.data(),
                                    want_lse.data(), t, v}),
                IsOk());
    cuda::DeviceBuffer dl = Up(logits), dt = Up(targets), dloss = Up(std::vector<float>(t)),
                       dlse = Up(std::vector<float>(t));
    ASSERT_THAT(CrossEntropy(Gpu(), {dl.as<float>(), dt.as<int32_t>(), dloss.as<float>(),
                                     dlse.as<float>(), t, v}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dloss, t), want_loss, 2e-6, 1e-6)) << "V=" << v;
    EXPECT_TRUE(AllClose(Down<float>(dlse, t), want_lse, 2e-6, 1e-6)) << "V=" << v;
    // Without lse.
    cuda::DeviceBuffer dloss2 = Up(std::vector<float>(t));
    ASSERT_THAT(CrossEntropy(Gpu(), {dl.as<float>(), dt.as<int32_t>(), dloss2.as<float>(),
                                     nullptr, t, v}),
                IsOk());
    EXPECT_TRUE(AllClose(Down<float>(dloss2, t), want_loss, 2e-6, 1e-6)) << "no lse, V=" << v;
  }
}

TEST_F(CudaOps, CrossEntropyRejectsTargetOutOfRangeOnDevice) {
  const int64_t v = 13;
  const std::vector<int32_t> targets = {1, -100, 13, 40};
  const std::vector<float> logits = RandomFloats(4 * v, 17);
  cuda::DeviceBuffer dl = Up(logits), dt = Up(targets), dloss = Up(std::vector<float>(4));
  EXPECT_THAT(CrossEntropy(Gpu(), {dl.as<float>(), dt.as<int32_t>(), dloss.as<float>(), nullptr,
                                   4, v}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("target 13 at row 2")));
}

TEST_F(CudaOps, AdamWSeveralSteps) {
  struct Case {
    int64_t n;
    double beta1, weight_decay;
  };
  for (const Case& c : {Case{100003, 0.9, 1e-2}, Case{13, 0.3, 0.0}, Case{1, 0.9, 0.1}}) {
    std::vector<float> p = RandomFloats(c.n, 18), m(c.n, 0.0f), v(c.n, 0.0f);
    std::vector<float> want_p = p, want_m = m, want_v = v;
    cuda::DeviceBuffer dp = Up(p), dm = Up(m), dv = Up(v);
    for (int64_t step = 1; step <= 5; ++step) {
      const std::vector<float> g = RandomFloats(c.n, 100 + static_cast<uint32_t>(step), -2, 2);
      AdamWArgs a{want_p.data(), g.data(), want_m.data(), want_v.data(), c.n, step};
      a.lr = 3e-3;
      a.beta1 = c.beta1;
      a.weight_decay = c.weight_decay;
      ASSERT_THAT(AdamW(kRef, a), IsOk());
      cuda::DeviceBuffer dg = Up(g);
      a.param = dp.as<float>();
      a.grad = dg.as<float>();
      a.m = dm.as<float>();
      a.v = dv.as<float>();
      ASSERT_THAT(AdamW(Gpu(), a), IsOk());
      ASSERT_THAT(ctx_->Synchronize(), IsOk());  // before dg goes away
    }
    const std::string label = "n=" + std::to_string(c.n) + " beta1=" + std::to_string(c.beta1);
    EXPECT_TRUE(AllClose(Down<float>(dp, c.n), want_p, 1e-12, 1e-6)) << "param " << label;
    EXPECT_TRUE(AllClose(Down<float>(dm, c.n), want_m, 1e-12, 1e-6)) << "m " << label;
    EXPECT_TRUE(AllClose(Down<float>(dv, c.n), want_v, 1e-12, 1e-6)) << "v " << label;
  }
}

}  // namespace
}  // namespace anvil
