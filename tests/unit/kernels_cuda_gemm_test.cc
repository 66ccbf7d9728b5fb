// CUDA Gemm (cuBLAS FP32, no TF32) against a double-precision loop: all four transpose
// combinations, alpha and beta (beta == 0 must not read C), padded leading dimensions whose
// padding stays untouched, K == 0 and alpha == 0, an exact check that no TF32 rounding happens,
// and argument errors. Skips without a CUDA device.
#include <cmath>
#include <limits>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/cuda.h"
#include "kernels/gemm.h"
#include "kernels/matmul.h"
#include "tests/testing/cuda_device.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::AllClose;
using ::anvil::testing::BitEqual;
using ::anvil::testing::IsOk;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;
using ::anvil::testing::Upload;

#define SKIP_WITHOUT_DEVICE() ANVIL_SKIP_WITHOUT_CUDA_DEVICE()

cuda::Context* Device() { return testing::SharedCudaContext(); }

ExecContext Cuda() { return ExecContext{Backend::kCuda, nullptr, Device()}; }

constexpr double kU = 0x1p-24;  // float unit roundoff
constexpr double kAtol = 1e-7;


// Runs here, without a device: the dispatcher refuses a kCuda context with no cuda::Context.
TEST(CudaGemmNoDevice, MissingContextIsInvalidArgument) {
  std::vector<float> x(4), y(1);
  const ExecContext ctx{Backend::kCuda, nullptr, nullptr};
  EXPECT_THAT(Gemm(ctx, {false, false, 1, 1, 1, 1.0f, x.data(), 1, x.data(), 1, 0.0f, y.data(), 1}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

// ---- Gemm ---------------------------------------------------------------------------------

struct GemmCase {
  bool trans_a, trans_b;
  int64_t m, n, k;
  float alpha, beta;
};

// Runs one Gemm with padded leading dimensions (lda, ldb, ldc > the row lengths) against a
// double-precision loop. C starts random, or NaN when beta == 0 (BLAS must not read it); the
// padding columns of C must come back untouched. Tolerance: cuBLAS FP32 sums K products and
// the beta term in some order: (K+2)u of the terms' magnitudes, x2.
void CheckGemm(const GemmCase& c, uint32_t seed) {
  SCOPED_TRACE(::testing::Message()
               << "trans_a=" << c.trans_a << " trans_b=" << c.trans_b << " M=" << c.m
               << " N=" << c.n << " K=" << c.k << " alpha=" << c.alpha << " beta=" << c.beta);
  const int64_t lda = (c.trans_a ? c.m : c.k) + 3, ldb = (c.trans_b ? c.k : c.n) + 5;
  const int64_t ldc = c.n + 7;
  const std::vector<float> a = RandomFloats((c.trans_a ? c.k : c.m) * lda, seed);
  const std::vector<float> b = RandomFloats((c.trans_b ? c.n : c.k) * ldb, seed + 1);
  std::vector<float> c0 = RandomFloats(c.m * ldc, seed + 2, -2.0f, 2.0f);
  if (c.beta == 0.0f) {
    for (int64_t i = 0; i < c.m; ++i) {
      for (int64_t j = 0; j < c.n; ++j) c0[i * ldc + j] = std::numeric_limits<float>::quiet_NaN();
    }
  }
  std::vector<float> want(c.m * c.n), scale(c.m * c.n);
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < c.n; ++j) {
      double s = 0.0, abs_s = 0.0;
      for (int64_t p = 0; p < c.k; ++p) {
        const double av = c.trans_a ? a[p * lda + i] : a[i * lda + p];
        const double bv = c.trans_b ? b[j * ldb + p] : b[p * ldb + j];
        s += av * bv;
        abs_s += std::fabs(av * bv);
      }
      const double cv = c.beta == 0.0f ? 0.0 : c.beta * static_cast<double>(c0[i * ldc + j]);
      want[i * c.n + j] = static_cast<float>(c.alpha * s + cv);
      scale[i * c.n + j] = static_cast<float>(std::fabs(c.alpha) * abs_s + std::fabs(cv));
    }
  }
  ANVIL_ASSERT_OK_AND_ASSIGN(auto ad, Upload(a.data(), a.size() * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto bd, Upload(b.data(), b.size() * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto cd, Upload(c0.data(), c0.size() * 4));
  const GemmArgs args{
      c.trans_a, c.trans_b,      c.m, c.n, c.k, c.alpha, ad.as<float>(), lda, bd.as<float>(), ldb,
      c.beta,    cd.as<float>(), ldc};
  ASSERT_THAT(Gemm(Cuda(), args), IsOk());
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  std::vector<float> c1(c0.size());
  ASSERT_THAT(cd.CopyToHost(c1.data(), c1.size() * 4), IsOk());
  std::vector<float> got(c.m * c.n), pad_got, pad_want;
  for (int64_t i = 0; i < c.m; ++i) {
    for (int64_t j = 0; j < ldc; ++j) {
      if (j < c.n) {
        got[i * c.n + j] = c1[i * ldc + j];
      } else {
        pad_got.push_back(c1[i * ldc + j]);
        pad_want.push_back(c0[i * ldc + j]);
      }
    }
  }
  EXPECT_TRUE(AllClose(got, want, kAtol, 2.0 * (c.k + 2) * kU, &scale));
  EXPECT_TRUE(BitEqual(pad_got, pad_want)) << "padding columns of C were written";
}

TEST(CudaGemm, AllTransposesAlphaBetaPaddedLeadingDims) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  const std::vector<std::pair<float, float>> alpha_beta = {
      {1.0f, 0.0f}, {-0.5f, 0.75f}, {2.0f, 1.0f}};
  uint32_t seed = 500;
  int v = 0;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (auto [m, n, k] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                             {7, 33, 65},
                             {64, 129, 300},
                             {300, 64, 17},
                             {256, 320, 384}}) {
        const auto [alpha, beta] = alpha_beta[v++ % alpha_beta.size()];
        CheckGemm({ta, tb, m, n, k, alpha, beta}, seed);
        seed += 3;
      }
    }
  }
}

// K == 0 or alpha == 0: C = beta * C without touching A and B; beta == 0 writes zeros over NaN.
TEST(CudaGemm, EmptyKAndZeroAlphaScaleC) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  CheckGemm({false, false, 5, 6, 0, 1.0f, 0.5f}, 600);
  CheckGemm({true, false, 5, 6, 0, 1.0f, 0.0f}, 601);
  CheckGemm({false, true, 5, 6, 8, 0.0f, -2.0f}, 602);
}

// FP32 without TF32: 1 + 2^-15 is a float but not a TF32 value (10 mantissa bits), so a TF32
// product would lose it and the exact sums below would come out as 16.
TEST(CudaGemm, NoTf32) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  const int64_t m = 128, n = 128, k = 16;
  const std::vector<float> a(m * k, 1.0f + 0x1p-15f), b(k * n, 1.0f);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto ad, Upload(a.data(), a.size() * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto bd, Upload(b.data(), b.size() * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto cd, cuda::DeviceBuffer::Allocate(m * n * 4));
  const std::vector<float> want(m * n, 16.0f + 0x1p-11f);
  std::vector<float> got(m * n);
  ASSERT_THAT(Gemm(Cuda(), {false, false, m, n, k, 1.0f, ad.as<float>(), k, bd.as<float>(), n, 0.0f,
                            cd.as<float>(), n}),
              IsOk());
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  ASSERT_THAT(cd.CopyToHost(got.data(), got.size() * 4), IsOk());
  EXPECT_TRUE(BitEqual(got, want)) << "Gemm";
  // MatMul with F32 weights: W [N][K] of ones.
  ASSERT_THAT(MatMul(Cuda(), {DType::kF32, bd.data(), ad.as<float>(), cd.as<float>(), m, n, k}),
              IsOk());
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  ASSERT_THAT(cd.CopyToHost(got.data(), got.size() * 4), IsOk());
  EXPECT_TRUE(BitEqual(got, want)) << "MatMul F32";
}

TEST(CudaGemm, ArgumentErrors) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto buf, cuda::DeviceBuffer::Allocate(4096));
  float* p = buf.as<float>();
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(cuda::Gemm(*Device(), {false, false, 2, 2, 2, 1.0f, nullptr, 2, p, 2, 0.0f, p, 2}),
              StatusIs(kInvalid, ::testing::HasSubstr("a is null")));
  EXPECT_THAT(cuda::Gemm(*Device(), {false, false, 2, 2, 2, 1.0f, p, 2, nullptr, 2, 0.0f, p, 2}),
              StatusIs(kInvalid, ::testing::HasSubstr("b is null")));
  EXPECT_THAT(cuda::Gemm(*Device(), {false, false, 2, 2, 2, 1.0f, p, 2, p, 2, 0.0f, nullptr, 2}),
              StatusIs(kInvalid, ::testing::HasSubstr("c is null")));
  EXPECT_THAT(cuda::Gemm(*Device(), {false, false, 2, 2, 2, 1.0f, p, 1, p, 2, 0.0f, p, 2}),
              StatusIs(kInvalid, ::testing::HasSubstr("lda=1")));
  EXPECT_THAT(cuda::Gemm(*Device(), {true, true, 2, 3, 4, 1.0f, p, 2, p, 4, 0.0f, p, 2}),
              StatusIs(kInvalid, ::testing::HasSubstr("ldc=2")));
  EXPECT_THAT(cuda::Gemm(*Device(), {false, false, 2, -1, 2, 1.0f, p, 2, p, 2, 0.0f, p, 2}),
              StatusIs(kInvalid));
}

}  // namespace
}  // namespace anvil
