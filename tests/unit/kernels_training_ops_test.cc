// Training ops: Softmax, LogSumExp, CrossEntropy and AdamW. The reference against values worked
// out by hand; the CPU backend against the reference over awkward shapes (one row, one column,
// columns not a multiple of 8, V = 49152, logits of +-80 and +-1000, -inf entries, rows that are
// all -inf) with 1 to 3 threads, within atol + rtol * |ref| for the row ops and bit for bit for
// AdamW over five steps; and the dispatcher's error codes through the public functions.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/adamw.h"
#include "kernels/backend.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cross_entropy.h"
#include "kernels/reference/reference.h"
#include "kernels/softmax.h"
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

#define SKIP_WITHOUT_AVX2() \
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C"

constexpr float kInf = std::numeric_limits<float>::infinity();
const float kLn2 = static_cast<float>(std::log(2.0));
const float kLn3 = static_cast<float>(std::log(3.0));

// ---- Reference against hand-computed values --------------------------------------------------

TEST(TrainingOpsReference, SoftmaxSmallCases) {
  // softmax([0, ln2, ln3]) = [1, 2, 3] / 6 (the inputs are ln2, ln3 rounded to float: within an
  // ulp).
  std::vector<float> x = {0.0f, kLn2, kLn3}, y(3);
  reference::Softmax({x.data(), y.data(), 1, 3});
  EXPECT_FLOAT_EQ(y[0], 1.0f / 6.0f);
  EXPECT_FLOAT_EQ(y[1], 2.0f / 6.0f);
  EXPECT_FLOAT_EQ(y[2], 3.0f / 6.0f);
  // Exact: equal logits, a -inf entry (weight 0), +-80 (e^-160 underflows to 0 in float, and
  // naive exp(80)s would sum to 1.1e35), and scale = 0 (uniform whatever x is).
  x = {3.0f, -kInf, 3.0f, 3.0f, 3.0f, 80.0f, -80.0f, 80.0f, 5.0f, -7.0f};
  y.assign(10, -1.0f);
  reference::Softmax({x.data(), y.data(), 1, 5});
  EXPECT_EQ(y[0], 0.25f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[4], 0.25f);
  reference::Softmax({x.data() + 5, y.data() + 5, 1, 3});
  EXPECT_EQ(y[5], 0.5f);
  EXPECT_EQ(y[6], 0.0f);
  EXPECT_EQ(y[7], 0.5f);
  reference::Softmax({x.data() + 8, y.data() + 8, 1, 2, /*scale=*/0.0f});
  EXPECT_EQ(y[8], 0.5f);
  EXPECT_EQ(y[9], 0.5f);
  // scale: softmax(0.5 * [0, 2]) = [1, e] / (1 + e).
  x = {0.0f, 2.0f};
  reference::Softmax({x.data(), y.data(), 1, 2, 0.5f});
  EXPECT_FLOAT_EQ(y[0], static_cast<float>(1.0 / (1.0 + std::exp(1.0))));
  EXPECT_FLOAT_EQ(y[1], static_cast<float>(std::exp(1.0) / (1.0 + std::exp(1.0))));
}

TEST(TrainingOpsReference, SoftmaxInPlaceAndAllMinusInf) {
  std::vector<float> x = RandomFloats(3 * 13, 1, -5.0f, 5.0f), want(3 * 13);
  reference::Softmax({x.data(), want.data(), 3, 13, 0.7f});
  reference::Softmax({x.data(), x.data(), 3, 13, 0.7f});
  EXPECT_TRUE(BitEqual(x, want));
  // A row that is all -inf gives NaN (as PyTorch), and leaves the next row alone.
  x = {-kInf, -kInf, 1.0f, 1.0f};
  reference::Softmax({x.data(), x.data(), 2, 2});
  EXPECT_TRUE(std::isnan(x[0]) && std::isnan(x[1]));
  EXPECT_EQ(x[2], 0.5f);
  EXPECT_EQ(x[3], 0.5f);
}

TEST(TrainingOpsReference, LogSumExpSmallCases) {
  const std::vector<float> x = {0.0f,    kLn2,    kLn3,  0.0f, 0.0f,  0.0f, 0.0f,
                                1000.0f, 1000.0f, -kInf, 5.0f, -kInf, -kInf};
  std::vector<float> out(1);
  reference::LogSumExp({x.data(), out.data(), 1, 3});
  EXPECT_FLOAT_EQ(out[0], static_cast<float>(std::log(6.0)));
  reference::LogSumExp({x.data() + 3, out.data(), 1, 4});
  EXPECT_EQ(out[0], static_cast<float>(std::log(4.0)));  // sum of ones is exact in double
  reference::LogSumExp({x.data() + 7, out.data(), 1, 2});
  EXPECT_EQ(out[0], static_cast<float>(1000.0 + std::log(2.0)));  // no overflow
  reference::LogSumExp({x.data() + 9, out.data(), 1, 2});
  EXPECT_EQ(out[0], 5.0f);  // exp(-inf) = 0
  reference::LogSumExp({x.data() + 11, out.data(), 1, 2});
  EXPECT_TRUE(std::isnan(out[0]));  // all -inf: NaN (kernels/softmax.h)
}

TEST(TrainingOpsReference, CrossEntropySmallCases) {
  // A uniform row: loss = lse = log V exactly (the double sum of V ones is exact).
  for (int64_t v : {7, 49152}) {
    const std::vector<float> logits(2 * v, 0.25f);
    const std::vector<int32_t> targets = {static_cast<int32_t>(v - 1), -100};
    std::vector<float> loss(2, -1.0f), lse(2, -1.0f);
    reference::CrossEntropy({logits.data(), targets.data(), loss.data(), lse.data(), 2, v});
    EXPECT_EQ(loss[0], static_cast<float>(std::log(static_cast<double>(v)))) << "V=" << v;
    EXPECT_EQ(lse[0], static_cast<float>(0.25 + std::log(static_cast<double>(v)))) << "V=" << v;
    EXPECT_EQ(loss[1], 0.0f) << "an ignored row has loss 0";
    EXPECT_EQ(lse[1], lse[0]) << "an ignored row still gets its lse";
  }
  // Probabilities [1, 2, 3] / 6: target 2 costs log 2, target 0 costs log 6; any negative target
  // is ignored. A confident, correct row keeps its tiny loss log(1 + 2e^-16) to float precision.
  const std::vector<float> logits = {0.0f, kLn2, kLn3, 0.0f, kLn2,  kLn3,
                                     0.0f, 0.0f, 0.0f, 0.0f, 16.0f, 0.0f};
  const std::vector<int32_t> targets = {2, 0, -1, 1};
  std::vector<float> loss(4, -1.0f);
  reference::CrossEntropy({logits.data(), targets.data(), loss.data(), nullptr, 4, 3});
  EXPECT_FLOAT_EQ(loss[0], static_cast<float>(std::log(2.0)));
  EXPECT_FLOAT_EQ(loss[1], static_cast<float>(std::log(6.0)));
  EXPECT_EQ(loss[2], 0.0f);
  const double tiny = std::log1p(2.0 * std::exp(-16.0));  // 2.25e-7
  EXPECT_NEAR(loss[3], tiny, tiny * 1e-6);
}

TEST(TrainingOpsReference, AdamWFirstStepByHand) {
  // Step 1 with PyTorch's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 1e-2):
  //   m = 0.1 * g, v = 0.001 * g^2, bias-corrected m/(1-0.9) = g and v/(1-0.999) = g^2, so
  //   p = p * (1 - 1e-5) - 1e-3 * g / (|g| + 1e-8), and p * (1 - 1e-5) alone where g = 0.
  std::vector<float> p = {1.0f, -2.0f, -2.0f}, g = {0.5f, -0.25f, 0.0f}, m(3, 0.0f), v(3, 0.0f);
  reference::AdamW({p.data(), g.data(), m.data(), v.data(), 3, /*step=*/1});
  EXPECT_EQ(m[0], 0.05f);     // 0.1f * 0.5f, exactly half of 0.1f
  EXPECT_EQ(v[0], 0.00025f);  // (0.001f * 0.5f) * 0.5f: scaling by 2^-2 is exact
  EXPECT_EQ(m[1], -0.025f);
  EXPECT_EQ(v[1], 0.0000625f);
  EXPECT_EQ(m[2], 0.0f);
  EXPECT_EQ(v[2], 0.0f);
  const double decay = 1.0 - 1e-3 * 1e-2;
  EXPECT_NEAR(p[0], 1.0 * decay - 1e-3 * 0.5 / (0.5 + 1e-8), 1.2e-7);  // 0.99899000002
  EXPECT_NEAR(p[1], -2.0 * decay + 1e-3 * 0.25 / (0.25 + 1e-8), 2.4e-7);
  EXPECT_EQ(p[2], -2.0f * static_cast<float>(decay));  // decay only, one float multiply
}

// ---- CPU against the reference -------------------------------------------------------------

struct RowCase {
  int64_t rows, cols;
  float range;    // logits uniform in [-range, range]
  bool with_inf;  // every 5th logit -inf, and the last row (when rows > 1) all -inf
};

std::string Describe(const RowCase& c, int threads) {
  return "rows=" + std::to_string(c.rows) + " cols=" + std::to_string(c.cols) +
         " range=" + std::to_string(c.range) + " inf=" + std::to_string(c.with_inf) +
         " threads=" + std::to_string(threads);
}

std::vector<float> Logits(const RowCase& c, uint32_t seed) {
  std::vector<float> x = RandomFloats(c.rows * c.cols, seed, -c.range, c.range);
  if (c.with_inf) {
    for (size_t i = 3; i < x.size(); i += 5) x[i] = -kInf;
    if (c.rows > 1) std::fill(x.end() - c.cols, x.end(), -kInf);
  }
  return x;
}

const RowCase kRowCases[] = {
    {1, 1, 1.0f, false},     {3, 1, 80.0f, false},      {1, 7, 1.0f, false},
    {4, 8, 80.0f, true},     {5, 13, 1000.0f, true},    {17, 33, 3.0f, false},
    {9, 200, 80.0f, true},   {3, 1029, 20.0f, false},   {1, 49152, 10.0f, false},
    {4, 49152, 80.0f, true}, {2, 49157, 1000.0f, false}};

// Tolerances: the CPU kernels' error is relative (exp within 2.3 ulp, float sums within ~1e-6,
// z - max rounded to float: ~|z - max| * 6e-8 relative in tiny terms); log(sum) turns a relative
// error of the sum into an absolute one on lse and loss.
constexpr double kSoftmaxAtol = 1e-9, kSoftmaxRtol = 1e-5;
constexpr double kLseAtol = 2e-6, kLseRtol = 1e-6;

TEST(TrainingOpsCpu, SoftmaxMatchesReference) {
  SKIP_WITHOUT_AVX2();
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (const RowCase& c : kRowCases) {
      for (float scale : {1.0f, 0.125f}) {
        const std::vector<float> x = Logits(c, 11);
        std::vector<float> want(x.size()), got(x.size(), -1.0f);
        reference::Softmax({x.data(), want.data(), c.rows, c.cols, scale});
        ASSERT_THAT(cpu::Softmax(&pool, {x.data(), got.data(), c.rows, c.cols, scale}), IsOk());
        EXPECT_TRUE(AllClose(got, want, kSoftmaxAtol, kSoftmaxRtol))
            << Describe(c, threads) << " scale=" << scale;
        std::vector<float> inplace = x;  // y aliases x
        ASSERT_THAT(cpu::Softmax(&pool, {inplace.data(), inplace.data(), c.rows, c.cols, scale}),
                    IsOk());
        EXPECT_TRUE(BitEqual(inplace, got)) << "in place, " << Describe(c, threads);
      }
    }
  }
}

TEST(TrainingOpsCpu, LogSumExpMatchesReference) {
  SKIP_WITHOUT_AVX2();
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (const RowCase& c : kRowCases) {
      const std::vector<float> x = Logits(c, 12);
      std::vector<float> want(c.rows), got(c.rows, -1.0f);
      reference::LogSumExp({x.data(), want.data(), c.rows, c.cols});
      ASSERT_THAT(cpu::LogSumExp(&pool, {x.data(), got.data(), c.rows, c.cols}), IsOk());
      EXPECT_TRUE(AllClose(got, want, kLseAtol, kLseRtol)) << Describe(c, threads);
      if (c.with_inf && c.rows > 1) {
        EXPECT_TRUE(std::isnan(got.back())) << "all -inf row";
      }
    }
  }
}

TEST(TrainingOpsCpu, CrossEntropyMatchesReference) {
  SKIP_WITHOUT_AVX2();
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (const RowCase& c : kRowCases) {
      const std::vector<float> x = Logits(c, 13);
      // Every fourth row ignored (-100 or -1); the others aim at a finite logit, except that a
      // -inf target (with_inf: index 3 of a row with cols > 3) gives +inf in both.
      std::vector<int32_t> targets(c.rows);
      for (int64_t t = 0; t < c.rows; ++t) {
        targets[t] = t % 4 == 1   ? (t % 8 == 1 ? -100 : -1)
                     : t % 4 == 2 ? static_cast<int32_t>(c.cols - 1)
                                  : static_cast<int32_t>((t * 7919 + 5) % c.cols);
      }
      std::vector<float> want_loss(c.rows), want_lse(c.rows);
      reference::CrossEntropy(
          {x.data(), targets.data(), want_loss.data(), want_lse.data(), c.rows, c.cols});
      std::vector<float> loss(c.rows, -1.0f), lse(c.rows, -1.0f);
      ASSERT_THAT(cpu::CrossEntropy(
                      &pool, {x.data(), targets.data(), loss.data(), lse.data(), c.rows, c.cols}),
                  IsOk());
      EXPECT_TRUE(AllClose(loss, want_loss, kLseAtol, kLseRtol)) << Describe(c, threads);
      EXPECT_TRUE(AllClose(lse, want_lse, kLseAtol, kLseRtol)) << Describe(c, threads);
      for (int64_t t = 1; t < c.rows; t += 4) EXPECT_EQ(loss[t], 0.0f) << "ignored row " << t;
      // Without lse the kernel skips ignored rows; the losses are the same bits.
      std::vector<float> loss_only(c.rows, -1.0f);
      ASSERT_THAT(cpu::CrossEntropy(
                      &pool, {x.data(), targets.data(), loss_only.data(), nullptr, c.rows, c.cols}),
                  IsOk());
      EXPECT_TRUE(BitEqual(loss_only, loss)) << "lse = null, " << Describe(c, threads);
    }
  }
}

// Several AdamW steps with fresh gradients each step, CPU and reference bit for bit on p, m
// and v. Lengths cover a lone tail element, one vector plus a tail, and several pool chunks
// plus a tail; beta1 = 0.3 takes the lerp's other branch (weight 0.7 >= 0.5).
TEST(TrainingOpsCpu, AdamWBitIdenticalOverFiveSteps) {
  SKIP_WITHOUT_AVX2();
  struct Hyper {
    double lr, beta1, beta2, eps, weight_decay;
  };
  const Hyper hypers[] = {
      {1e-3, 0.9, 0.999, 1e-8, 0.0}, {1e-3, 0.9, 0.999, 1e-8, 0.1}, {3e-4, 0.3, 0.95, 1e-6, 0.01}};
  for (int threads = 1; threads <= 3; ++threads) {
    ThreadPool pool(threads);
    for (const Hyper& h : hypers) {
      for (int64_t n : {1, 13, 3 * 16384 + 5}) {
        std::vector<float> p_ref = RandomFloats(n, 21, -2.0f, 2.0f), p_cpu = p_ref;
        std::vector<float> m_ref(n, 0.0f), v_ref(n, 0.0f), m_cpu(n, 0.0f), v_cpu(n, 0.0f);
        for (int64_t step = 1; step <= 5; ++step) {
          // Gradients of mixed scale, with exact zeros and a huge one.
          std::vector<float> g = RandomFloats(n, static_cast<uint32_t>(100 + step), -1.0f, 1.0f);
          for (int64_t i = 0; i < n; ++i) {
            if (i % 11 == 4) g[i] = 0.0f;
            if (i % 7 == 2) g[i] *= 1e-6f;
            if (i % 97 == 50) g[i] *= 1e4f;
          }
          AdamWArgs args{p_ref.data(), g.data(), m_ref.data(), v_ref.data(), n, step};
          args.lr = h.lr;
          args.beta1 = h.beta1;
          args.beta2 = h.beta2;
          args.eps = h.eps;
          args.weight_decay = h.weight_decay;
          reference::AdamW(args);
          args.param = p_cpu.data();
          args.m = m_cpu.data();
          args.v = v_cpu.data();
          ASSERT_THAT(cpu::AdamW(&pool, args), IsOk());
          const std::string where = "n=" + std::to_string(n) + " step=" + std::to_string(step) +
                                    " beta1=" + std::to_string(h.beta1) +
                                    " wd=" + std::to_string(h.weight_decay) +
                                    " threads=" + std::to_string(threads);
          ASSERT_TRUE(BitEqual(p_cpu, p_ref)) << "param, " << where;
          ASSERT_TRUE(BitEqual(m_cpu, m_ref)) << "m, " << where;
          ASSERT_TRUE(BitEqual(v_cpu, v_ref)) << "v, " << where;
        }
      }
    }
  }
}

// ---- The public functions and the dispatcher's checks --------------------------------------

TEST(TrainingOpsDispatch, PublicFunctionsRunOnBothHostBackends) {
  ThreadPool pool(2);
  const int64_t t = 3, v = 37;
  const std::vector<float> x = RandomFloats(t * v, 31, -4.0f, 4.0f);
  const std::vector<int32_t> targets = {5, -100, 36};
  std::vector<ExecContext> contexts = {{Backend::kReference}};
  if (cpu::Supported()) {
    contexts.push_back({Backend::kCpu, &pool});
    contexts.push_back({Backend::kCpu, nullptr});  // no pool: single-threaded
  }
  std::vector<float> want_y(t * v), want_out(t), want_loss(t);
  reference::Softmax({x.data(), want_y.data(), t, v, 0.5f});
  reference::LogSumExp({x.data(), want_out.data(), t, v});
  reference::CrossEntropy({x.data(), targets.data(), want_loss.data(), nullptr, t, v});
  for (const ExecContext& ctx : contexts) {
    SCOPED_TRACE(BackendName(ctx.backend));
    std::vector<float> y(t * v), out(t), loss(t);
    ASSERT_THAT(Softmax(ctx, {x.data(), y.data(), t, v, 0.5f}), IsOk());
    EXPECT_TRUE(AllClose(y, want_y, kSoftmaxAtol, kSoftmaxRtol));
    ASSERT_THAT(LogSumExp(ctx, {x.data(), out.data(), t, v}), IsOk());
    EXPECT_TRUE(AllClose(out, want_out, kLseAtol, kLseRtol));
    ASSERT_THAT(CrossEntropy(ctx, {x.data(), targets.data(), loss.data(), nullptr, t, v}), IsOk());
    EXPECT_TRUE(AllClose(loss, want_loss, kLseAtol, kLseRtol));
    std::vector<float> p = {1.0f, -2.0f}, g = {0.5f, -0.25f}, m(2, 0.0f), mv(2, 0.0f);
    ASSERT_THAT(AdamW(ctx, {p.data(), g.data(), m.data(), mv.data(), 2, 1}), IsOk());
    EXPECT_NEAR(p[0], 0.99899000002, 1.2e-7);
  }
}

TEST(TrainingOpsDispatch, BadArgumentsAreInvalidArgument) {
  ThreadPool pool(2);
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  std::vector<float> x(8, 0.0f), y(8), loss(2);
  std::vector<int32_t> targets = {1, 4};  // 4 is not below V = 4
  std::vector<float> p(2, 1.0f), g(2, 0.5f), m(2, 0.0f), v(2, 0.0f);
  for (const ExecContext& ctx :
       {ExecContext{Backend::kCpu, &pool}, ExecContext{Backend::kReference}}) {
    SCOPED_TRACE(BackendName(ctx.backend));
    EXPECT_THAT(Softmax(ctx, {x.data(), y.data(), 2, 0}), StatusIs(kInvalid));
    EXPECT_THAT(Softmax(ctx, {x.data(), y.data(), -1, 4}), StatusIs(kInvalid));
    EXPECT_THAT(LogSumExp(ctx, {x.data(), y.data(), 2, 0}), StatusIs(kInvalid));
    EXPECT_THAT(CrossEntropy(ctx, {x.data(), targets.data(), loss.data(), nullptr, 2, 4}),
                StatusIs(kInvalid, ::testing::HasSubstr("target 4 at row 1")));
    EXPECT_THAT(CrossEntropy(ctx, {x.data(), targets.data(), loss.data(), nullptr, 2, 0}),
                StatusIs(kInvalid));
    EXPECT_THAT(AdamW(ctx, {p.data(), g.data(), m.data(), v.data(), 2, /*step=*/0}),
                StatusIs(kInvalid));
    AdamWArgs bad_beta{p.data(), g.data(), m.data(), v.data(), 2, 1};
    bad_beta.beta2 = 1.0;
    EXPECT_THAT(AdamW(ctx, bad_beta), StatusIs(kInvalid));
    // Nothing was written by the rejected calls.
    EXPECT_EQ(p[0], 1.0f);
    EXPECT_EQ(m[0], 0.0f);
  }
}

// kCuda without a cuda::Context: InvalidArgument in CUDA builds, Unimplemented otherwise.
TEST(TrainingOpsDispatch, CudaWithoutContextIsRefused) {
  const ExecContext ctx{Backend::kCuda};
  std::vector<float> x(8, 0.0f), y(8), loss(2);
  std::vector<int32_t> targets = {1, -100};
  std::vector<float> p(2, 1.0f), g(2, 0.5f), m(2, 0.0f), v(2, 0.0f);
  const auto refused = AnyOf(StatusIs(absl::StatusCode::kInvalidArgument),
                             StatusIs(absl::StatusCode::kUnimplemented));
  EXPECT_THAT(Softmax(ctx, {x.data(), y.data(), 2, 4}), refused);
  EXPECT_THAT(LogSumExp(ctx, {x.data(), y.data(), 2, 4}), refused);
  EXPECT_THAT(CrossEntropy(ctx, {x.data(), targets.data(), loss.data(), nullptr, 2, 4}), refused);
  EXPECT_THAT(AdamW(ctx, {p.data(), g.data(), m.data(), v.data(), 2, 1}), refused);
}

}  // namespace
}  // namespace anvil
