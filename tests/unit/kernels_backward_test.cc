// The backward ops (layer_ops_backward.h, CrossEntropyBackward, RopeArgs::inverse). The
// reference against central finite differences of its forward; Rope followed by inverse Rope
// against the input; the CPU backend against the reference over awkward shapes (T=1, C not a
// multiple of 8, V=49152, GQA groups of 3 and 1, odd head dims, repeated ids, aliased outputs)
// with 1 to 3 threads, within atol + rtol * |ref|; and the dispatcher's exact error codes.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cross_entropy.h"
#include "kernels/layer_ops.h"
#include "kernels/layer_ops_backward.h"
#include "kernels/reference/reference.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::AllClose;
using ::anvil::testing::BitEqual;
using ::anvil::testing::IsOk;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;
using ::testing::AnyOf;
using ::testing::HasSubstr;

#define SKIP_WITHOUT_AVX2() \
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C"

const ExecContext kRef{Backend::kReference};
constexpr auto kInvalid = absl::StatusCode::kInvalidArgument;

// ---- Finite differences ----------------------------------------------------------------------
//
// L(x) = sum_j r_j * y_j(x) with a fixed random r, so dL/dx is the backward op applied to dy = r.
// The forward runs in float on x +- h at every element of x; L is summed in double, and
// (L(x+h) - L(x-h)) / 2h is compared with the analytic gradient within atol + rtol * |grad|:
//  - rounding: each y_j carries at most a few ulp of error (the forwards round each operation
//    to float; take 4 ulp = 2^-22 relative), independently in the two evaluations, so L's error
//    is below 2 * 2^-22 * sum|r_j y_j| and the difference quotient's below that over 2h:
//    atol = 2^-22 * sum|r_j y_j| / h.
//  - truncation: central differences are exact for quadratics; the remainder is h^2/6 * f'''.
//    With inputs of order 1, h = 1e-2 and third derivatives of the same order as the first,
//    that is ~2e-5 relative; rtol = 2e-3 leaves room for the curvier softmax and silu.
// A wrong formula (a dropped term, a sign, a missed GQA head) errs by O(|grad|), far above both.
constexpr float kStep = 1e-2f;
constexpr double kFdRtol = 2e-3;

using Forward = std::function<std::vector<float>()>;

struct FdResult {
  std::vector<float> numeric;
  double atol = 0.0;
};

// Perturbs each element of *x (which `forward` reads) in turn.
FdResult NumericGradient(std::vector<float>* x, const Forward& forward,
                         const std::vector<float>& r) {
  const auto loss = [&](double* abs_sum) {
    const std::vector<float> y = forward();
    double l = 0.0;
    for (size_t j = 0; j < y.size(); ++j) {
      l += static_cast<double>(r[j]) * y[j];
      if (abs_sum != nullptr) *abs_sum += std::fabs(static_cast<double>(r[j]) * y[j]);
    }
    return l;
  };
  FdResult res;
  double abs_sum = 0.0;
  loss(&abs_sum);
  res.atol = std::ldexp(abs_sum, -22) / kStep;
  res.numeric.resize(x->size());
  for (size_t i = 0; i < x->size(); ++i) {
    const float x0 = (*x)[i];
    (*x)[i] = x0 + kStep;
    const double lp = loss(nullptr);
    (*x)[i] = x0 - kStep;
    const double lm = loss(nullptr);
    (*x)[i] = x0;
    // The step actually taken is the float difference of the two points.
    const double h2 = static_cast<double>(x0 + kStep) - static_cast<double>(x0 - kStep);
    res.numeric[i] = static_cast<float>((lp - lm) / h2);
  }
  return res;
}

#define EXPECT_GRADIENT(x, forward, r, analytic)                                  \
  do {                                                                            \
    const FdResult fd = NumericGradient(&(x), forward, r);                        \
    EXPECT_TRUE(AllClose(analytic, fd.numeric, fd.atol, kFdRtol)) << "d/d" << #x; \
  } while (0)

TEST(BackwardFiniteDifference, RmsNorm) {
  for (auto [t, c] : {std::pair<int64_t, int64_t>{1, 8}, {3, 13}}) {
    std::vector<float> x = RandomFloats(t * c, 1, -2.0f, 2.0f), w = RandomFloats(c, 2, 0.5f, 1.5f);
    const std::vector<float> r = RandomFloats(t * c, 3);
    const Forward f = [&] {
      std::vector<float> y(t * c);
      reference::RmsNorm({x.data(), w.data(), y.data(), t, c, 1e-5f});
      return y;
    };
    std::vector<float> dx(t * c, 0.0f), dw(c, 0.0f);
    reference::RmsNormBackward({x.data(), w.data(), r.data(), dx.data(), dw.data(), t, c});
    EXPECT_GRADIENT(x, f, r, dx);
    EXPECT_GRADIENT(w, f, r, dw);
  }
}

TEST(BackwardFiniteDifference, RopeInverseIsTheGradient) {
  for (bool neox : {false, true}) {
    const int64_t t = 3, h = 2, d = 10, n_rot = 8;
    std::vector<float> x = RandomFloats(t * h * d, 4);
    const std::vector<float> r = RandomFloats(t * h * d, 5);
    const std::vector<int32_t> pos = {0, 7, 300};
    const Forward f = [&] {
      std::vector<float> y = x;
      reference::Rope({y.data(), pos.data(), t, h, d, n_rot, 10000.0f, neox});
      return y;
    };
    std::vector<float> dx = r;
    reference::Rope({dx.data(), pos.data(), t, h, d, n_rot, 10000.0f, neox, /*inverse=*/true});
    EXPECT_GRADIENT(x, f, r, dx);
  }
}

TEST(BackwardFiniteDifference, Attention) {
  struct Case {
    int64_t t, h, h_kv, d;
  };
  for (const Case& c : {Case{1, 2, 1, 4}, Case{5, 6, 2, 8}, Case{4, 3, 3, 5}}) {
    std::vector<float> q = RandomFloats(c.t * c.h * c.d, 6, -1.5f, 1.5f);
    std::vector<float> k = RandomFloats(c.t * c.h_kv * c.d, 7, -1.5f, 1.5f);
    std::vector<float> v = RandomFloats(c.t * c.h_kv * c.d, 8);
    const std::vector<float> r = RandomFloats(c.t * c.h * c.d, 9);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    const Forward f = [&] {
      std::vector<float> out(q.size());
      reference::Attention(
          {q.data(), k.data(), v.data(), out.data(), c.t, 0, c.h, c.h_kv, c.d, scale});
      return out;
    };
    const std::vector<float> out = f();
    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
    reference::AttentionBackward({q.data(), k.data(), v.data(), out.data(), r.data(), dq.data(),
                                  dk.data(), dv.data(), c.t, c.h, c.h_kv, c.d, scale});
    SCOPED_TRACE("T=" + std::to_string(c.t) + " H=" + std::to_string(c.h) +
                 " Hkv=" + std::to_string(c.h_kv) + " D=" + std::to_string(c.d));
    EXPECT_GRADIENT(q, f, r, dq);
    EXPECT_GRADIENT(k, f, r, dk);
    EXPECT_GRADIENT(v, f, r, dv);
  }
}

TEST(BackwardFiniteDifference, SwiGlu) {
  const int64_t n = 40;
  std::vector<float> gate = RandomFloats(n, 10, -6.0f, 6.0f), up = RandomFloats(n, 11);
  const std::vector<float> r = RandomFloats(n, 12);
  const Forward f = [&] {
    std::vector<float> out(n);
    reference::SwiGlu({gate.data(), up.data(), out.data(), n});
    return out;
  };
  std::vector<float> dgate(n), dup(n);
  reference::SwiGluBackward({gate.data(), up.data(), r.data(), dgate.data(), dup.data(), n});
  EXPECT_GRADIENT(gate, f, r, dgate);
  EXPECT_GRADIENT(up, f, r, dup);
}

TEST(BackwardFiniteDifference, Embedding) {
  const int64_t t = 6, v = 5, c = 3;
  std::vector<float> table = RandomFloats(v * c, 13);
  const std::vector<int32_t> ids = {4, 1, 4, 0, 4, 1};  // repeats; row 2 unused
  const std::vector<float> r = RandomFloats(t * c, 14);
  const Forward f = [&] {
    std::vector<float> y(t * c);
    reference::GetRows({DType::kF32, table.data(), ids.data(), y.data(), t, v, c});
    return y;
  };
  std::vector<float> dtable(v * c, 0.0f);
  reference::EmbeddingBackward({ids.data(), r.data(), dtable.data(), t, v, c});
  EXPECT_GRADIENT(table, f, r, dtable);
  EXPECT_EQ(dtable[2 * c], 0.0f);
}

TEST(BackwardFiniteDifference, CrossEntropy) {
  const int64_t t = 4, v = 9;
  std::vector<float> logits = RandomFloats(t * v, 15, -3.0f, 3.0f);
  const std::vector<int32_t> targets = {2, -100, 8, 0};
  const std::vector<float> dloss = {0.25f, 0.5f, -1.5f, 1.0f};  // r: one weight per row's loss
  std::vector<float> lse(t);
  const Forward f = [&] {
    std::vector<float> loss(t);
    reference::CrossEntropy({logits.data(), targets.data(), loss.data(), lse.data(), t, v});
    return loss;
  };
  f();
  std::vector<float> dlogits(t * v, -1.0f);
  reference::CrossEntropyBackward(
      {logits.data(), lse.data(), targets.data(), dloss.data(), dlogits.data(), t, v});
  EXPECT_GRADIENT(logits, f, dloss, dlogits);
  for (int64_t c = 0; c < v; ++c) EXPECT_EQ(dlogits[v + c], 0.0f) << "ignored row";
}

// ---- Rope inverse ----------------------------------------------------------------------------

TEST(RopeInverse, UndoesTheForwardOnBothHostBackends) {
  ThreadPool pool(2);
  std::vector<ExecContext> contexts = {kRef};
  if (cpu::Supported()) contexts.push_back({Backend::kCpu, &pool});
  struct Case {
    int64_t t, h, d, n_rot;
    bool neox;
  };
  for (const ExecContext& ctx : contexts) {
    for (const Case& c : {Case{1, 9, 64, 64, false}, Case{17, 3, 64, 64, true},
                          Case{4, 3, 40, 28, true}, Case{5, 2, 24, 16, false}}) {
      const std::vector<float> x = RandomFloats(c.t * c.h * c.d, 16, -2.0f, 2.0f);
      std::vector<int32_t> pos(c.t);
      for (int64_t i = 0; i < c.t; ++i) pos[i] = static_cast<int32_t>(i * 37 % 2048);
      std::vector<float> y = x;
      RopeArgs args{y.data(), pos.data(), c.t, c.h, c.d, c.n_rot, 10000.0f, c.neox};
      ASSERT_THAT(Rope(ctx, args), IsOk());
      args.inverse = true;
      ASSERT_THAT(Rope(ctx, args), IsOk());
      EXPECT_TRUE(AllClose(y, x, 1e-6, 0.0))
          << BackendName(ctx.backend) << " D=" << c.d << " neox=" << c.neox;
      // The CPU's inverse is the reference's bits, as its forward is.
      std::vector<float> want = x;
      reference::Rope({want.data(), pos.data(), c.t, c.h, c.d, c.n_rot, 10000.0f, c.neox, true});
      std::vector<float> got = x;
      ASSERT_THAT(
          Rope(ctx, {got.data(), pos.data(), c.t, c.h, c.d, c.n_rot, 10000.0f, c.neox, true}),
          IsOk());
      EXPECT_TRUE(BitEqual(got, want)) << BackendName(ctx.backend);
    }
  }
}

// ---- CPU against the reference -----------------------------------------------------------------
//
// The CPU kernels sum in float where the reference sums in double, and use ggml's exp (within
// 2.3 ulp): their error is a few float ulps of the magnitude of the terms summed. atol is set
// relative to the largest |ref| of each output, but at least to the terms' scale `floor` (a
// gradient entry can be a cancellation far below its terms: with T = 1 attention's dS is
// P * (dP - Delta) = 0 exactly in the reference and float noise in the CPU's), rtol covers the
// rest.

double MaxAbs(const std::vector<float>& v) {
  double m = 0.0;
  for (float f : v) m = std::max(m, static_cast<double>(std::fabs(f)));
  return m;
}

::testing::AssertionResult CloseToRef(const std::vector<float>& got, const std::vector<float>& want,
                                      double rel_atol, double rtol, double floor = 0.0) {
  return AllClose(got, want, rel_atol * std::max(floor, MaxAbs(want)), rtol);
}

TEST(BackwardCpu, RmsNormMatchesReference) {
  SKIP_WITHOUT_AVX2();
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (auto [t, c] :
         {std::pair<int64_t, int64_t>{1, 576}, {3, 13}, {17, 577}, {5, 1}, {64, 576}, {40, 1536}}) {
      const std::vector<float> x = RandomFloats(t * c, 17, -3.0f, 3.0f), w = RandomFloats(c, 18);
      const std::vector<float> dy = RandomFloats(t * c, 19);
      // dx and dw start non-zero: both accumulate.
      std::vector<float> want_dx = RandomFloats(t * c, 20), want_dw = RandomFloats(c, 21);
      std::vector<float> dx = want_dx, dw = want_dw, dx_frozen = want_dx;
      reference::RmsNormBackward(
          {x.data(), w.data(), dy.data(), want_dx.data(), want_dw.data(), t, c});
      ASSERT_THAT(
          cpu::RmsNormBackward(&pool, {x.data(), w.data(), dy.data(), dx.data(), dw.data(), t, c}),
          IsOk());
      const std::string where = "T=" + std::to_string(t) + " C=" + std::to_string(c) +
                                " threads=" + std::to_string(threads);
      EXPECT_TRUE(CloseToRef(dx, want_dx, 1e-6, 1e-5)) << "dx " << where;
      EXPECT_TRUE(CloseToRef(dw, want_dw, 1e-6, 1e-5)) << "dw " << where;
      ASSERT_THAT(cpu::RmsNormBackward(
                      &pool, {x.data(), w.data(), dy.data(), dx_frozen.data(), nullptr, t, c}),
                  IsOk());
      EXPECT_TRUE(BitEqual(dx_frozen, dx)) << "dw = null, " << where;
    }
  }
}

TEST(BackwardCpu, AttentionMatchesReference) {
  SKIP_WITHOUT_AVX2();
  struct Case {
    int64_t t, h, h_kv, d;
    float range;  // q and k uniform in [-range, range]: larger is a peakier softmax
  };
  const Case cases[] = {{1, 9, 3, 64, 1.0f},  {2, 3, 1, 8, 1.0f},   {17, 6, 2, 64, 2.0f},
                        {33, 3, 3, 5, 1.0f},  {70, 9, 3, 64, 1.0f}, {45, 4, 1, 20, 3.0f},
                        {256, 9, 3, 64, 1.0f}};
  // 3 and 6 threads give each kv head its own group of slots when Hkv = 3 (AttentionBackward).
  for (int threads : {1, 2, 3, 6}) {
    ThreadPool pool(threads);
    for (const Case& c : cases) {
      if (c.t == 256 && threads != 6) continue;  // the big case once
      const std::vector<float> q = RandomFloats(c.t * c.h * c.d, 22, -c.range, c.range);
      const std::vector<float> k = RandomFloats(c.t * c.h_kv * c.d, 23, -c.range, c.range);
      const std::vector<float> v = RandomFloats(c.t * c.h_kv * c.d, 24);
      const std::vector<float> dout = RandomFloats(c.t * c.h * c.d, 25);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
      std::vector<float> out(q.size());
      reference::Attention(
          {q.data(), k.data(), v.data(), out.data(), c.t, 0, c.h, c.h_kv, c.d, scale});
      AttentionBackwardArgs args{q.data(), k.data(), v.data(), out.data(), dout.data(),
                                 nullptr,  nullptr,  nullptr,  c.t,        c.h,
                                 c.h_kv,   c.d,      scale};
      std::vector<float> want_dq(q.size()), want_dk(k.size()), want_dv(v.size());
      args.dq = want_dq.data(), args.dk = want_dk.data(), args.dv = want_dv.data();
      reference::AttentionBackward(args);
      std::vector<float> dq(q.size(), NAN), dk(k.size(), NAN), dv(v.size(), NAN);
      args.dq = dq.data(), args.dk = dk.data(), args.dv = dv.data();
      ASSERT_THAT(cpu::AttentionBackward(&pool, args), IsOk());
      const std::string where = "T=" + std::to_string(c.t) + " H=" + std::to_string(c.h) +
                                " Hkv=" + std::to_string(c.h_kv) + " D=" + std::to_string(c.d) +
                                " threads=" + std::to_string(threads);
      EXPECT_TRUE(CloseToRef(dq, want_dq, 2e-6, 1e-4, 1.0)) << "dq " << where;
      EXPECT_TRUE(CloseToRef(dk, want_dk, 2e-6, 1e-4, 1.0)) << "dk " << where;
      EXPECT_TRUE(CloseToRef(dv, want_dv, 2e-6, 1e-4, 1.0)) << "dv " << where;
    }
  }
}

TEST(BackwardCpu, SwiGluMatchesReference) {
  SKIP_WITHOUT_AVX2();
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 7, 8, 13, 3 * 16384 + 5}) {
      std::vector<float> gate = RandomFloats(n, 26, -12.0f, 12.0f);
      if (n > 4) gate[3] = -100.0f, gate[4] = 100.0f;  // e^-g overflows / underflows
      const std::vector<float> up = RandomFloats(n, 27, -3.0f, 3.0f), dout = RandomFloats(n, 28);
      std::vector<float> want_dg(n), want_du(n), dg(n), du(n);
      reference::SwiGluBackward(
          {gate.data(), up.data(), dout.data(), want_dg.data(), want_du.data(), n});
      ASSERT_THAT(cpu::SwiGluBackward(
                      &pool, {gate.data(), up.data(), dout.data(), dg.data(), du.data(), n}),
                  IsOk());
      const std::string where = "n=" + std::to_string(n) + " threads=" + std::to_string(threads);
      // Relative to |dout * up| (dgate) and |dout * gate| (dup) per element: silu'(g) crosses 0
      // near g = -1.28, where the value is a cancellation.
      std::vector<float> scale_g(n), scale_u(n);
      for (int64_t i = 0; i < n; ++i) {
        scale_g[i] = std::fabs(dout[i] * up[i]);
        scale_u[i] = std::fabs(dout[i] * gate[i]);
      }
      EXPECT_TRUE(AllClose(dg, want_dg, 1e-30, 2e-6, &scale_g)) << "dgate " << where;
      EXPECT_TRUE(AllClose(du, want_du, 1e-30, 2e-6, &scale_u)) << "dup " << where;
      // Outputs aliasing dout, one at a time.
      std::vector<float> alias = dout, other(n);
      ASSERT_THAT(cpu::SwiGluBackward(
                      &pool, {gate.data(), up.data(), alias.data(), alias.data(), other.data(), n}),
                  IsOk());
      EXPECT_TRUE(BitEqual(alias, dg) && BitEqual(other, du)) << "dgate = dout, " << where;
      alias = dout;
      ASSERT_THAT(cpu::SwiGluBackward(
                      &pool, {gate.data(), up.data(), alias.data(), other.data(), alias.data(), n}),
                  IsOk());
      EXPECT_TRUE(BitEqual(other, dg) && BitEqual(alias, du)) << "dup = dout, " << where;
    }
  }
}

TEST(BackwardCpu, EmbeddingIsBitIdenticalToReference) {
  SKIP_WITHOUT_AVX2();
  struct Case {
    int64_t t, v, c;
  };
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (const Case& c : {Case{1, 3, 576}, Case{9, 4, 13}, Case{300, 7, 576}, Case{1000, 50, 40}}) {
      std::vector<int32_t> ids(c.t);
      for (int64_t i = 0; i < c.t; ++i) ids[i] = static_cast<int32_t>((i * i * 31 + 3) % c.v);
      const std::vector<float> dy = RandomFloats(c.t * c.c, 29);
      std::vector<float> want = RandomFloats(c.v * c.c, 30), got = want;
      reference::EmbeddingBackward({ids.data(), dy.data(), want.data(), c.t, c.v, c.c});
      ASSERT_THAT(cpu::EmbeddingBackward(&pool, {ids.data(), dy.data(), got.data(), c.t, c.v, c.c}),
                  IsOk());
      EXPECT_TRUE(BitEqual(got, want)) << "T=" << c.t << " V=" << c.v << " C=" << c.c;
    }
  }
}

TEST(BackwardCpu, CrossEntropyMatchesReference) {
  SKIP_WITHOUT_AVX2();
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (auto [t, v] :
         {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {9, 200}, {5, 49152}, {4, 49157}}) {
      const std::vector<float> logits = RandomFloats(t * v, 31, -20.0f, 20.0f);
      std::vector<int32_t> targets(t);
      for (int64_t i = 0; i < t; ++i) {
        targets[i] = i % 3 == 1 ? -100 : static_cast<int32_t>((i * 7919 + 5) % v);
      }
      const std::vector<float> dloss = RandomFloats(t, 32, -2.0f, 2.0f);
      std::vector<float> loss(t), lse(t);
      reference::CrossEntropy({logits.data(), targets.data(), loss.data(), lse.data(), t, v});
      std::vector<float> want(t * v), got(t * v, NAN);
      CrossEntropyBackwardArgs args{
          logits.data(), lse.data(), targets.data(), dloss.data(), want.data(), t, v};
      reference::CrossEntropyBackward(args);
      args.dlogits = got.data();
      ASSERT_THAT(cpu::CrossEntropyBackward(&pool, args), IsOk());
      // Each element is dloss * p with p from ggml's exp of (x - lse) rounded to float: relative
      // error ~|x - lse| * 6e-8 + 2.3 ulp, |x - lse| <= ~50 here.
      const std::string where = "T=" + std::to_string(t) + " V=" + std::to_string(v) +
                                " threads=" + std::to_string(threads);
      EXPECT_TRUE(AllClose(got, want, 1e-12, 5e-6)) << where;
      std::vector<float> inplace = logits;  // dlogits aliases logits
      args.logits = args.dlogits = inplace.data();
      ASSERT_THAT(cpu::CrossEntropyBackward(&pool, args), IsOk());
      EXPECT_TRUE(BitEqual(inplace, got)) << "in place, " << where;
    }
  }
}

// ---- The public functions and the dispatcher's checks ------------------------------------------

TEST(BackwardDispatch, BadIdsAndTargetsAreInvalidArgumentAndWriteNothing) {
  ThreadPool pool(2);
  std::vector<ExecContext> contexts = {kRef};
  if (cpu::Supported()) contexts.push_back({Backend::kCpu, &pool});
  for (const ExecContext& ctx : contexts) {
    SCOPED_TRACE(BackendName(ctx.backend));
    const std::vector<float> dy(4 * 2, 1.0f);
    std::vector<float> table(5 * 2, 0.0f);
    for (const std::vector<int32_t>& ids :
         {std::vector<int32_t>{0, 1, 5, 2}, std::vector<int32_t>{0, 1, -1, 2}}) {
      EXPECT_THAT(EmbeddingBackward(ctx, {ids.data(), dy.data(), table.data(), 4, 5, 2}),
                  StatusIs(kInvalid, HasSubstr("token id " + std::to_string(ids[2]) +
                                               " at position 2 is outside [0, 5)")));
    }
    EXPECT_EQ(MaxAbs(table), 0.0) << "nothing added";
    const std::vector<float> logits(2 * 4, 0.0f), lse(2, 1.0f), dloss(2, 1.0f);
    std::vector<float> dlogits(2 * 4, 7.0f);
    const std::vector<int32_t> targets = {-100, 4};  // 4 is not below V = 4
    EXPECT_THAT(CrossEntropyBackward(ctx, {logits.data(), lse.data(), targets.data(), dloss.data(),
                                           dlogits.data(), 2, 4}),
                StatusIs(kInvalid, HasSubstr("target 4 at row 1 is not below V=4")));
    EXPECT_EQ(dlogits[0], 7.0f) << "nothing written";
    EXPECT_THAT(CrossEntropyBackward(ctx, {logits.data(), lse.data(), targets.data(), dloss.data(),
                                           dlogits.data(), 2, 0}),
                StatusIs(kInvalid));
    float x = 0.0f;
    EXPECT_THAT(AttentionBackward(ctx, {&x, &x, &x, &x, &x, &x, &x, &x, 1, 4, 3, 1}),
                StatusIs(kInvalid, HasSubstr("H=4 is not a multiple of Hkv=3")));
    EXPECT_THAT(AttentionBackward(ctx, {&x, &x, &x, &x, &x, &x, &x, &x, 1, 4, 0, 1}),
                StatusIs(kInvalid));
    EXPECT_THAT(RmsNormBackward(ctx, {&x, &x, &x, &x, nullptr, 1, 0}), StatusIs(kInvalid));
    EXPECT_THAT(SwiGluBackward(ctx, {&x, &x, &x, &x, &x, -1}), StatusIs(kInvalid));
  }
}

TEST(BackwardDispatch, PublicFunctionsRunOnBothHostBackends) {
  ThreadPool pool(2);
  std::vector<ExecContext> contexts = {kRef};
  if (cpu::Supported()) contexts.push_back({Backend::kCpu, &pool});
  const int64_t t = 5, h = 3, h_kv = 1, d = 8;
  const std::vector<float> q = RandomFloats(t * h * d, 33), k = RandomFloats(t * h_kv * d, 34);
  const std::vector<float> v = RandomFloats(t * h_kv * d, 35), dout = RandomFloats(t * h * d, 36);
  std::vector<float> out(q.size());
  ASSERT_THAT(Attention(kRef, {q.data(), k.data(), v.data(), out.data(), t, 0, h, h_kv, d, 0.3f}),
              IsOk());
  std::vector<float> want_dq(q.size()), want_dk(k.size()), want_dv(v.size());
  reference::AttentionBackward({q.data(), k.data(), v.data(), out.data(), dout.data(),
                                want_dq.data(), want_dk.data(), want_dv.data(), t, h, h_kv, d,
                                0.3f});
  for (const ExecContext& ctx : contexts) {
    SCOPED_TRACE(BackendName(ctx.backend));
    std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
    ASSERT_THAT(AttentionBackward(ctx, {q.data(), k.data(), v.data(), out.data(), dout.data(),
                                        dq.data(), dk.data(), dv.data(), t, h, h_kv, d, 0.3f}),
                IsOk());
    EXPECT_TRUE(CloseToRef(dq, want_dq, 2e-6, 1e-4, 1.0));
    EXPECT_TRUE(CloseToRef(dk, want_dk, 2e-6, 1e-4, 1.0));
    EXPECT_TRUE(CloseToRef(dv, want_dv, 2e-6, 1e-4, 1.0));
    // T = 0 is a no-op everywhere.
    EXPECT_THAT(AttentionBackward(ctx, {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                        nullptr, nullptr, 0, h, h_kv, d}),
                IsOk());
  }
}

// kCuda without a cuda::Context: InvalidArgument in CUDA builds, Unimplemented otherwise.
TEST(BackwardDispatch, CudaWithoutContextIsRefused) {
  const ExecContext ctx{Backend::kCuda};
  const auto refused = AnyOf(StatusIs(kInvalid), StatusIs(absl::StatusCode::kUnimplemented));
  float x = 0.0f;
  const int32_t id = 0;
  EXPECT_THAT(RmsNormBackward(ctx, {&x, &x, &x, &x, nullptr, 1, 1}), refused);
  EXPECT_THAT(AttentionBackward(ctx, {&x, &x, &x, &x, &x, &x, &x, &x, 1, 1, 1, 1}), refused);
  EXPECT_THAT(SwiGluBackward(ctx, {&x, &x, &x, &x, &x, 1}), refused);
  EXPECT_THAT(EmbeddingBackward(ctx, {&id, &x, &x, 1, 1, 1}), refused);
  EXPECT_THAT(CrossEntropyBackward(ctx, {&x, &x, &id, &x, &x, 1, 1}), refused);
}

}  // namespace
}  // namespace anvil
