// CUDA MatMul against the reference loops on host data: every weight DType over
// awkward shapes (M across the GEMV / cuBLAS threshold, N = 1, 3, 577, 49152, K = 32..32000 and
// odd K for float weights, unaligned weight pointers), with tolerances derived from each path's
// numerics; the activation quantizer and 16-bit rounding bit for bit; argument errors. Every
// test but the first skips without a CUDA device. Gemm: kernels_cuda_gemm_test.cc.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/half.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/launch_matmul.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"
#include "kernels/reference/reference.h"
#include "tests/testing/cuda_device.h"
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
using ::anvil::testing::Upload;

#define SKIP_WITHOUT_DEVICE() ANVIL_SKIP_WITHOUT_CUDA_DEVICE()

cuda::Context* Device() { return testing::SharedCudaContext(); }

ExecContext Cuda() { return ExecContext{Backend::kCuda, nullptr, Device()}; }

constexpr double kU = 0x1p-24;  // float unit roundoff

// ---- problems and tolerances --------------------------------------------------------------

struct Problem {
  DType type;
  int64_t m, n, k;
  std::vector<float> x;      // [M][K]
  std::vector<uint8_t> w;    // [N][K] in type
  std::vector<float> want;   // [M][N] from the reference
  std::vector<float> scale;  // [M][N] sum of |terms| of each dot product (see TermScale)
};

// Sum over the dot product's terms of their magnitudes, with the operands the reference uses:
// x rounded to F16/BF16, or quantized to Q8 and dequantized (q * d, exact in float). For Q4_1
// the reference splits each block into d_w*d_x*sum(q_w*q_x) + m_w*s_x, whose parts can cancel,
// so their magnitudes are added too. Every rounding error below is relative to this.
std::vector<float> TermScale(const Problem& p) {
  const int64_t k = p.k, nb = k / kQK;
  std::vector<float> xr(p.m * k);  // [M][K] the x the reference multiplies
  std::vector<float> q4_1_extra(p.m * p.n, 0.0f);
  std::vector<BlockQ8_0> x8(nb);
  std::vector<BlockQ8_1> x81(nb);
  for (int64_t i = 0; i < p.m; ++i) {
    const float* x = p.x.data() + i * k;
    float* r = xr.data() + i * k;
    switch (p.type) {
      case DType::kF32:
        std::memcpy(r, x, k * sizeof(float));
        break;
      case DType::kF16:
        for (int64_t e = 0; e < k; ++e) r[e] = HalfToFloat(FloatToHalf(x[e]));
        break;
      case DType::kBF16:
        for (int64_t e = 0; e < k; ++e) r[e] = Bf16ToFloat(FloatToBf16(x[e]));
        break;
      case DType::kQ8_0:
      case DType::kQ4_0:
        QuantizeActivationQ8_0(x, x8.data(), k);
        DequantizeRow(DType::kQ8_0, x8.data(), r, k);
        break;
      case DType::kQ4_1: {
        QuantizeActivationQ8_1(x, x81.data(), k);
        for (int64_t b = 0; b < nb; ++b) {
          const float d = HalfToFloat(x81[b].d);
          for (int j = 0; j < kQK; ++j) r[b * kQK + j] = x81[b].qs[j] * d;
        }
        const int64_t row_bytes = nb * static_cast<int64_t>(sizeof(BlockQ4_1));
        for (int64_t n = 0; n < p.n; ++n) {
          const auto* wb = reinterpret_cast<const BlockQ4_1*>(p.w.data() + n * row_bytes);
          double s = 0.0;
          for (int64_t b = 0; b < nb; ++b) {
            double qq = 0.0;
            for (int j = 0; j < kQK / 2; ++j) {
              qq += std::fabs((wb[b].qs[j] & 0x0F) * 1.0 * x81[b].qs[j]);
              qq += std::fabs((wb[b].qs[j] >> 4) * 1.0 * x81[b].qs[j + kQK / 2]);
            }
            s += std::fabs(HalfToFloat(wb[b].d) * 1.0 * HalfToFloat(x81[b].d)) * qq;
            s += std::fabs(HalfToFloat(wb[b].m) * 1.0 * HalfToFloat(x81[b].s));
          }
          q4_1_extra[i * p.n + n] = static_cast<float>(s);
        }
        break;
      }
    }
  }
  std::vector<float> scale(p.m * p.n), wrow(k);
  const int64_t row_bytes = k / BlockElems(p.type) * BlockBytes(p.type);
  for (int64_t n = 0; n < p.n; ++n) {
    DequantizeRow(p.type, p.w.data() + n * row_bytes, wrow.data(), k);
    for (int64_t i = 0; i < p.m; ++i) {
      const float* r = xr.data() + i * k;
      double s = 0.0;
      for (int64_t e = 0; e < k; ++e) s += std::fabs(static_cast<double>(wrow[e]) * r[e]);
      scale[i * p.n + n] = static_cast<float>(s) + q4_1_extra[i * p.n + n];
    }
  }
  return scale;
}

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
  p.scale = TermScale(p);
  return p;
}

// |cuda - reference| <= kAtol + rtol * scale, rtol from the path's arithmetic (first-order
// bounds: n additions in any order err by at most n*u*sum|terms|):
//  * F32: cuBLAS FP32 in some order vs the reference's order: 2(K+1)u.
//  * F16/BF16: products exact in float on both sides; tensor-core FP32 accumulation truncates
//    (<= 2u per addition, K of them), the reference rounds its double sum once (u); x2 for
//    cuBLAS's unspecified split-K reductions: 4(K+1)u.
//  * Quantized, GEMV (M <= 16): the same 8-bit activations (bit-identical quantizer) and the
//    same float scales d_w*d_x; only the summation order differs: ours <= 2*nb block terms
//    plus an 8-level tree, the reference's 8 lanes of nb plus nb offsets plus its hsum:
//    (4nb + 16)u, x2 for second-order terms.
//  * Quantized, dequantize + cuBLAS (M > 16): W and the Q8 round trip of x rounded to F16
//    (2^-11 each, so 2^-10 per product), the reference's s_x rounded to fp16 (2^-11, Q4_1),
//    plus the F16 accumulation bound above.
constexpr double kAtol = 1e-7;
constexpr int64_t kGemvMaxM = 16;  // kernels/cuda/matmul.cc

double Rtol(DType t, int64_t m, int64_t k) {
  const double nb = static_cast<double>(k / kQK);
  switch (t) {
    case DType::kF32:
      return 2.0 * (k + 1) * kU;
    case DType::kF16:
    case DType::kBF16:
      return 4.0 * (k + 1) * kU;
    default:
      if (m <= kGemvMaxM) return 2.0 * (4.0 * nb + 16.0) * kU;
      return 0x1p-10 + 0x1p-11 + 4.0 * (k + 1) * kU;
  }
}


// Runs cuda MatMul on p with the weights placed `w_offset` bytes into their device buffer.
absl::StatusOr<std::vector<float>> RunCuda(const Problem& p, size_t w_offset = 0) {
  std::vector<uint8_t> w_host(w_offset + p.w.size() + 1, 0xAB);
  std::memcpy(w_host.data() + w_offset, p.w.data(), p.w.size());
  ANVIL_ASSIGN_OR_RETURN(auto w, Upload(w_host.data(), w_host.size()));
  ANVIL_ASSIGN_OR_RETURN(auto x, Upload(p.x.data(), p.x.size() * 4));
  // y starts as NaN so that an element the kernel never writes fails the comparison.
  std::vector<float> y(p.m * p.n, std::numeric_limits<float>::quiet_NaN());
  ANVIL_ASSIGN_OR_RETURN(auto yd, Upload(y.data(), y.size() * 4));
  const MatMulArgs args{p.type, w.as<uint8_t>() + w_offset, x.as<float>(), yd.as<float>(), p.m, p.n,
                        p.k};
  ANVIL_RETURN_IF_ERROR(MatMul(Cuda(), args));
  ANVIL_RETURN_IF_ERROR(Device()->Synchronize());
  ANVIL_RETURN_IF_ERROR(yd.CopyToHost(y.data(), y.size() * 4));
  return y;
}

void ExpectMatches(const Problem& p, size_t w_offset = 0) {
  auto got = RunCuda(p, w_offset);
  ASSERT_THAT(got, IsOk()) << DTypeName(p.type) << " M=" << p.m << " N=" << p.n << " K=" << p.k;
  EXPECT_TRUE(AllClose(*got, p.want, kAtol, Rtol(p.type, p.m, p.k), &p.scale))
      << DTypeName(p.type) << " M=" << p.m << " N=" << p.n << " K=" << p.k
      << " w_offset=" << w_offset;
}

// ---- MatMul -------------------------------------------------------------------------------

// Runs here, without a device: the dispatcher refuses a kCuda context with no cuda::Context.
TEST(CudaMatMulNoDevice, MissingContextIsInvalidArgument) {
  std::vector<float> x(32), y(1);
  std::vector<uint8_t> w(64);
  const ExecContext ctx{Backend::kCuda, nullptr, nullptr};
  EXPECT_THAT(MatMul(ctx, {DType::kQ8_0, w.data(), x.data(), y.data(), 1, 1, 32}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

class CudaMatMulTest : public ::testing::TestWithParam<DType> {};

TEST_P(CudaMatMulTest, MatchesReferenceOverShapes) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  const DType type = GetParam();
  uint32_t seed = 100;
  // 1, 2, 7: one GEMV pass; 13: two passes (8 + 5); 64, 512: cuBLAS.
  for (int64_t m : {1, 2, 7, 13, 64, 512}) {
    for (int64_t n : {1, 3, 577}) {
      for (int64_t k : {32, 576, 1536}) {
        ExpectMatches(MakeProblem(type, m, n, k, seed++));
      }
    }
  }
}

// The vocabulary projection at decode: many rows, so the GEMV runs full tiles over all SMs.
TEST_P(CudaMatMulTest, WideDecode) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  ExpectMatches(MakeProblem(GetParam(), 1, 49152, 576, 7));
  ExpectMatches(MakeProblem(GetParam(), 3, 4099, 576, 8));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaMatMulTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0,
                                           DType::kQ4_0, DType::kQ4_1),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

// K that is no multiple of 32 or of any vector width: float weights only.
class CudaMatMulFloatTest : public ::testing::TestWithParam<DType> {};

TEST_P(CudaMatMulFloatTest, OddK) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  for (int64_t k : {1, 7, 33, 100}) {
    for (int64_t m : {1, 5, 70}) ExpectMatches(MakeProblem(GetParam(), m, 9, k, 77 + k));
  }
}

INSTANTIATE_TEST_SUITE_P(FloatTypes, CudaMatMulFloatTest,
                         ::testing::Values(DType::kF32, DType::kF16, DType::kBF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

class CudaMatMulQuantTest : public ::testing::TestWithParam<DType> {};

// GGUF tensors need not start 16-byte aligned on the device: blocks are 2-byte aligned, and the
// GEMV's tile copy handles the unaligned head and tail of each tile.
TEST_P(CudaMatMulQuantTest, UnalignedWeights) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  for (size_t offset : {2, 6, 10, 14}) {
    ExpectMatches(MakeProblem(GetParam(), 1, 577, 576, 30 + offset), offset);
    ExpectMatches(MakeProblem(GetParam(), 7, 33, 96, 40 + offset), offset);
    ExpectMatches(MakeProblem(GetParam(), 20, 33, 96, 50 + offset), offset);  // dequant path
  }
}

// Rows longer than the GEMV's 16 KB tile are streamed in chunks of whole blocks.
TEST_P(CudaMatMulQuantTest, LongRows) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  for (int64_t k : {16000, 32000}) {
    ExpectMatches(MakeProblem(GetParam(), 1, 5, k, 60));
    ExpectMatches(MakeProblem(GetParam(), 3, 2, k, 61), 2);
  }
  // More row groups than the persistent grid has CTAs, each of several chunks.
  ExpectMatches(MakeProblem(GetParam(), 2, 1100, 20000, 62), 6);
}

// Fixed reduction order: the same call gives the same bits.
TEST_P(CudaMatMulQuantTest, Deterministic) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  const Problem p = MakeProblem(GetParam(), 2, 1000, 1536, 70);
  auto a = RunCuda(p);
  auto b = RunCuda(p);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_TRUE(BitEqual(*a, *b));
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, CudaMatMulQuantTest,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_0, DType::kQ4_1),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(CudaMatMul, EmptyShapes) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  std::vector<float> host(8, 7.0f);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto buf, cuda::DeviceBuffer::FromHost(host.data(), 8 * 4));
  float* y = buf.as<float>();
  const float* x = buf.as<float>();
  const void* w = buf.data();
  for (DType t : {DType::kF32, DType::kQ4_1}) {
    EXPECT_THAT(MatMul(Cuda(), {t, w, x, y, 0, 4, 32}), IsOk());
    EXPECT_THAT(MatMul(Cuda(), {t, w, x, y, 2, 0, 32}), IsOk());
  }
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  ASSERT_THAT(buf.CopyToHost(host.data(), 8 * 4), IsOk());
  EXPECT_EQ(host[0], 7.0f);
  // K == 0: empty dot products are 0.
  for (DType t : {DType::kF32, DType::kQ8_0}) {
    EXPECT_THAT(MatMul(Cuda(), {t, w, x, y + 2, 2, 3, 0}), IsOk());
  }
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  ASSERT_THAT(buf.CopyToHost(host.data(), 8 * 4), IsOk());
  EXPECT_EQ(host[1], 7.0f);
  for (int i = 2; i < 8; ++i) EXPECT_EQ(host[i], 0.0f) << i;
}

TEST(CudaMatMul, ArgumentErrors) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto buf, cuda::DeviceBuffer::Allocate(4096));
  const auto* w = buf.as<uint8_t>();
  const float* x = buf.as<float>();
  float* y = buf.as<float>() + 512;
  const auto kInvalid = absl::StatusCode::kInvalidArgument;
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    EXPECT_THAT(MatMul(Cuda(), {t, w, x, y, 1, 1, 48}),
                StatusIs(kInvalid, ::testing::HasSubstr("K=48")))
        << DTypeName(t);
    EXPECT_THAT(MatMul(Cuda(), {t, w + 1, x, y, 1, 1, 32}), StatusIs(kInvalid)) << DTypeName(t);
  }
  EXPECT_THAT(MatMul(Cuda(), {DType::kQ4_1, nullptr, x, y, 1, 1, 32}),
              StatusIs(kInvalid, ::testing::HasSubstr("w is null")));
  EXPECT_THAT(MatMul(Cuda(), {DType::kF32, w, nullptr, y, 1, 1, 32}),
              StatusIs(kInvalid, ::testing::HasSubstr("x is null")));
  EXPECT_THAT(MatMul(Cuda(), {DType::kBF16, w, x, nullptr, 1, 1, 32}),
              StatusIs(kInvalid, ::testing::HasSubstr("y is null")));
  EXPECT_THAT(MatMul(Cuda(), {DType::kF16, w, x, y, -1, 1, 32}), StatusIs(kInvalid));
  ASSERT_THAT(Device()->Synchronize(), IsOk());
}

// ---- the conversions the MatMul paths rely on, bit for bit ----------------------------------

// Rows that exercise the quantizer: ties at .5 (x * 127/amax landing on or next to k + 1/2),
// zeros, a single tiny value, and random rows across 40 binades.
std::vector<float> QuantizerInput() {
  std::vector<float> x;
  for (float amax : {1.0f, 3.0f, 0.1f, 1000.0f}) {
    for (int i = 0; i < 96; ++i) {
      x.push_back(amax / 127.0f * (static_cast<float>(i % 255) - 127.0f) / 2);
    }
    x[x.size() - 91] = amax;
  }
  x.insert(x.end(), 32, 0.0f);
  std::vector<float> one(32, 0.0f);
  one[17] = -3e-5f;
  x.insert(x.end(), one.begin(), one.end());
  for (uint32_t s = 0; s < 40; ++s) {
    const float mag = std::ldexp(1.0f, static_cast<int>(s) - 20);
    const std::vector<float> r = RandomFloats(64, 1000 + s, -mag, mag);
    x.insert(x.end(), r.begin(), r.end());
  }
  return x;
}

TEST(CudaMatMulConvert, ActivationQuantizerIsBitIdenticalToReference) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  const std::vector<float> x = QuantizerInput();
  const int64_t k = 64, m = static_cast<int64_t>(x.size()) / k, nb = k / kQK;
  ASSERT_EQ(x.size() % k, 0u);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto xd, cuda::DeviceBuffer::FromHost(x.data(), x.size() * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto qd, cuda::DeviceBuffer::Allocate(m * k));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto dd, cuda::DeviceBuffer::Allocate(m * nb * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto sd, cuda::DeviceBuffer::Allocate(m * nb * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto hd, cuda::DeviceBuffer::Allocate(m * k * 2));
  const auto stream = static_cast<cudaStream_t>(Device()->stream());
  ASSERT_EQ(cuda::LaunchQuantizeActivationsQ8(xd.as<float>(), m, k, qd.as<int8_t>(), dd.as<float>(),
                                              sd.as<float>(), stream),
            cudaSuccess);
  ASSERT_EQ(cuda::LaunchQuantizeRoundTripF16(xd.as<float>(), m, k, hd.data(), stream), cudaSuccess);
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  std::vector<int8_t> q(m * k);
  std::vector<float> d(m * nb), s(m * nb);
  std::vector<uint16_t> h(m * k);
  ASSERT_THAT(qd.CopyToHost(q.data(), q.size()), IsOk());
  ASSERT_THAT(dd.CopyToHost(d.data(), d.size() * 4), IsOk());
  ASSERT_THAT(sd.CopyToHost(s.data(), s.size() * 4), IsOk());
  ASSERT_THAT(hd.CopyToHost(h.data(), h.size() * 2), IsOk());
  std::vector<BlockQ8_0> want0(m * nb);
  std::vector<BlockQ8_1> want1(m * nb);
  QuantizeActivationQ8_0(x.data(), want0.data(), m * k);
  QuantizeActivationQ8_1(x.data(), want1.data(), m * k);
  for (int64_t b = 0; b < m * nb; ++b) {
    ASSERT_EQ(std::memcmp(q.data() + b * kQK, want0[b].qs, kQK), 0) << "block " << b;
    ASSERT_EQ(FloatBits(d[b]), FloatBits(HalfToFloat(want0[b].d))) << "block " << b;
    ASSERT_EQ(FloatBits(s[b]), FloatBits(HalfToFloat(want1[b].s))) << "block " << b;
    for (int j = 0; j < kQK; ++j) {
      const float v = want0[b].qs[j] * HalfToFloat(want0[b].d);
      ASSERT_EQ(h[b * kQK + j], FloatToHalf(v)) << "block " << b << " element " << j;
    }
  }
}

TEST(CudaMatMulConvert, HalfRoundingMatchesScalar) {
  SKIP_WITHOUT_DEVICE();
  ASSERT_NE(Device(), nullptr);
  std::vector<float> x = RandomFloats(203, 9, -70000.0f, 70000.0f);
  for (int i = 0; i < 40; ++i) x[i] = std::ldexp(1.0f + i / 64.0f, -14 - i);  // subnormal halves
  x[50] = INFINITY;
  x[51] = -65520.0f;
  x[52] = 1.0f + 0x1p-11f;  // a tie: even rounds down
  x[53] = 1.0f + 0x1p-8f;   // a bf16 tie
  ANVIL_ASSERT_OK_AND_ASSIGN(auto xd, cuda::DeviceBuffer::FromHost(x.data(), x.size() * 4));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto hd, cuda::DeviceBuffer::Allocate(x.size() * 2));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto bd, cuda::DeviceBuffer::Allocate(x.size() * 2));
  const auto stream = static_cast<cudaStream_t>(Device()->stream());
  const auto count = static_cast<int64_t>(x.size());
  ASSERT_EQ(
      cuda::LaunchConvertToHalf(xd.as<float>(), count, cuda::HalfType::kF16, hd.data(), stream),
      cudaSuccess);
  ASSERT_EQ(
      cuda::LaunchConvertToHalf(xd.as<float>(), count, cuda::HalfType::kBF16, bd.data(), stream),
      cudaSuccess);
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  std::vector<uint16_t> h(x.size()), b(x.size());
  ASSERT_THAT(hd.CopyToHost(h.data(), h.size() * 2), IsOk());
  ASSERT_THAT(bd.CopyToHost(b.data(), b.size() * 2), IsOk());
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(h[i], FloatToHalf(x[i])) << i << " " << x[i];
    EXPECT_EQ(b[i], FloatToBf16(x[i])) << i << " " << x[i];
  }
  // x not 16-byte aligned: the scalar kernel converts everything.
  ASSERT_EQ(cuda::LaunchConvertToHalf(xd.as<float>() + 1, count - 1, cuda::HalfType::kBF16,
                                      bd.data(), stream),
            cudaSuccess);
  ASSERT_THAT(Device()->Synchronize(), IsOk());
  ASSERT_THAT(bd.CopyToHost(b.data(), (b.size() - 1) * 2), IsOk());
  for (size_t i = 1; i < x.size(); ++i) EXPECT_EQ(b[i - 1], FloatToBf16(x[i])) << i << " " << x[i];
}

}  // namespace
}  // namespace anvil
