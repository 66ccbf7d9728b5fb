// The CUDA quantized GEMV's activation paths (kernels/cuda/matmul_quant.cu): the fused kernel,
// which quantizes x in each CTA, must give the same bits as the quantization kernel + GEMV
// pair (itself checked against the reference in kernels_cuda_matmul_test.cc) over every weight
// type, row counts across the 8-row passes, rows cut into chunks, x staged in several pieces
// (K > 8192), the quantizer's rounding ties, unaligned x (which falls back) and chains of
// products where each reads the previous one's output (the GEMV lets the next one launch
// early: the wait must hold). Every test but the first skips without a CUDA device.
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/launch_matmul.h"
#include "kernels/matmul.h"
#include "tests/testing/cuda_device.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/kernel_data.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::BitEqual;
using ::anvil::testing::IsOk;
using ::anvil::testing::MakeWeights;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::Upload;

cuda::Context* Device() { return testing::SharedCudaContext(); }
ExecContext Cuda() { return ExecContext{Backend::kCuda, nullptr, Device()}; }

// An H100's shared memory: 228 KB per SM, 227 KB per CTA.
constexpr int kH100SmemPerSm = 233472, kH100SmemPerBlock = 232448;

// Runs here, without a device: the planned occupancy (4 CTAs of 32 KB of tiles for up to two
// rows, 3 beyond) leaves room for x only up to a point.
TEST(CudaGemvFused, FitsOnlyWhereSharedMemoryAllows) {
  const auto fits = [](int64_t m, int64_t k) {
    return cuda::GemvQuantFusedFits(m, k, kH100SmemPerSm, kH100SmemPerBlock);
  };
  EXPECT_TRUE(fits(1, 576));
  EXPECT_TRUE(fits(1, 4096));
  EXPECT_TRUE(fits(1, 14336));  // 17.5 KB of x: 4 x (32.3 + 17.5 + 1) KB <= 228 KB
  EXPECT_TRUE(fits(2, 4096));
  EXPECT_TRUE(fits(16, 576));
  EXPECT_FALSE(fits(1, 32000));  // 39 KB of x: four CTAs no longer fit
  EXPECT_FALSE(fits(2, 14336));
  EXPECT_TRUE(fits(9, 4096));    // an 8-row pass (40 KB of x, 3 CTAs per SM), then a 1-row one
  EXPECT_FALSE(fits(9, 8192));   // the 8-row pass would need 80 KB
  EXPECT_FALSE(fits(0, 576));
  EXPECT_FALSE(fits(1, 48));  // not whole blocks
  EXPECT_FALSE(cuda::GemvQuantFusedFits(1, 576, 100000, kH100SmemPerBlock));
}

using Acts = cuda::Context::GemvActivations;

// y = x W^T on the device with the given activation path; x starts x_offset floats into its
// buffer (1: 4-byte aligned only).
absl::StatusOr<std::vector<float>> RunMatMul(DType type, const std::vector<uint8_t>& w,
                                             const std::vector<float>& x, int64_t m,
                                             int64_t n, int64_t k, Acts acts,
                                             size_t x_offset = 0) {
  std::vector<float> x_host(x_offset + x.size());
  std::memcpy(x_host.data() + x_offset, x.data(), x.size() * 4);
  ANVIL_ASSIGN_OR_RETURN(auto wd, Upload(w.data(), w.size()));
  ANVIL_ASSIGN_OR_RETURN(auto xd, Upload(x_host.data(), x_host.size() * 4));
  std::vector<float> y(m * n, std::numeric_limits<float>::quiet_NaN());
  ANVIL_ASSIGN_OR_RETURN(auto yd, Upload(y.data(), y.size() * 4));
  const Acts before = Device()->gemv_activations();
  Device()->set_gemv_activations(acts);
  const absl::Status s =
      MatMul(Cuda(), {type, wd.data(), xd.as<float>() + x_offset, yd.as<float>(), m, n, k});
  Device()->set_gemv_activations(before);
  ANVIL_RETURN_IF_ERROR(s);
  ANVIL_RETURN_IF_ERROR(Device()->Synchronize());
  ANVIL_RETURN_IF_ERROR(yd.CopyToHost(y.data(), y.size() * 4));
  return y;
}

class CudaGemvFusedTest : public ::testing::TestWithParam<DType> {
 protected:
  // Fused and two-kernel results of one problem, bit for bit.
  void ExpectSameBits(int64_t m, int64_t n, int64_t k, const std::vector<float>& x,
                      uint32_t seed, size_t x_offset = 0) {
    const std::vector<uint8_t> w = MakeWeights(GetParam(), RandomFloats(n * k, seed), n, k);
    auto two = RunMatMul(GetParam(), w, x, m, n, k, Acts::kTwoKernels);
    ASSERT_THAT(two, IsOk());
    for (Acts acts : {Acts::kFused}) {
      auto fused = RunMatMul(GetParam(), w, x, m, n, k, acts, x_offset);
      ASSERT_THAT(fused, IsOk());
      EXPECT_TRUE(BitEqual(*fused, *two))
          << DTypeName(GetParam()) << " M=" << m << " N=" << n << " K=" << k
          << " x_offset=" << x_offset;
    }
  }
};

TEST_P(CudaGemvFusedTest, SameBitsAsTwoKernels) {
  if (absl::Status s = cuda::DeviceStatus(); !s.ok()) GTEST_SKIP() << s.message();
  ASSERT_NE(Device(), nullptr);
  // The smallest shape fits any device's shared memory: the fused path is really taken.
  ASSERT_TRUE(cuda::GemvQuantFusedFits(1, 576, Device()->smem_per_sm(),
                                       Device()->smem_per_block_optin()));
  uint32_t seed = 100;
  for (int64_t m : {1, 2, 3, 8, 9, 16}) {
    for (int64_t n : {1, 3, 577, 4100}) {
      for (int64_t k : {32, 576, 4096}) {
        ExpectSameBits(m, n, k, RandomFloats(m * k, seed), seed + 1);
        seed += 2;
      }
    }
  }
  // Rows longer than a 16 KB tile (Q8_0: chunks of a row), and K = 14336 (Llama-8B's FFN).
  ExpectSameBits(1, 7, 16000, RandomFloats(16000, 7), 8);
  ExpectSameBits(1, 300, 14336, RandomFloats(14336, 9), 10);
}

// Values that land on the quantizer's rounding ties, zeros and a lone tiny value per block.
TEST_P(CudaGemvFusedTest, QuantizerTies) {
  if (absl::Status s = cuda::DeviceStatus(); !s.ok()) GTEST_SKIP() << s.message();
  ASSERT_NE(Device(), nullptr);
  const int64_t k = 256, m = 4;
  std::vector<float> x(m * k, 0.0f);
  for (int64_t i = 0; i < m * k; ++i) {
    const float amax = std::ldexp(1.0f, static_cast<int>(i % 7) * 5 - 12);
    x[i] = amax / 127.0f * (static_cast<float>(i % 255) - 127.0f) / 2;
    if (i % 32 == 5) x[i] = amax;
  }
  for (int64_t i = 64; i < 96; ++i) x[i] = 0.0f;  // an all-zero block
  x[130] = -3e-5f;
  for (int64_t i = 128; i < 160; ++i) {
    if (i != 130) x[i] = 0.0f;
  }
  ExpectSameBits(m, 65, k, x, 20);
}

// x only 4-byte aligned: MatMul takes the two-kernel path, with the same result.
TEST_P(CudaGemvFusedTest, UnalignedActivations) {
  if (absl::Status s = cuda::DeviceStatus(); !s.ok()) GTEST_SKIP() << s.message();
  ASSERT_NE(Device(), nullptr);
  ExpectSameBits(1, 577, 576, RandomFloats(576, 30), 31, /*x_offset=*/1);
  ExpectSameBits(3, 40, 4096, RandomFloats(3 * 4096, 32), 33, /*x_offset=*/3);
}

// A chain of square products, each reading the previous one's output, queued back to back:
// each GEMV lets the next launch before it finishes, so this fails if the next one read x
// before waiting. Compared with the same chain on the two-kernel path.
TEST_P(CudaGemvFusedTest, ChainedProducts) {
  if (absl::Status s = cuda::DeviceStatus(); !s.ok()) GTEST_SKIP() << s.message();
  ASSERT_NE(Device(), nullptr);
  for (int64_t d : {576, 4096}) {
    constexpr int kLayers = 6;
    std::vector<cuda::DeviceBuffer> ws;
    for (int l = 0; l < kLayers; ++l) {
      // Rows scaled so activations neither vanish nor blow up over the chain.
      std::vector<float> wf = RandomFloats(d * d, 40 + l, -1.0f, 1.0f);
      for (float& v : wf) v *= 2.0f / std::sqrt(static_cast<float>(d));
      const std::vector<uint8_t> w = MakeWeights(GetParam(), wf, d, d);
      ANVIL_ASSERT_OK_AND_ASSIGN(auto wd, Upload(w.data(), w.size()));
      ws.push_back(std::move(wd));
    }
    const std::vector<float> x0 = RandomFloats(2 * d, 50);
    const Acts paths[] = {Acts::kTwoKernels, Acts::kFused};
    std::vector<float> results[2];
    for (int path = 0; path < 2; ++path) {
      ANVIL_ASSERT_OK_AND_ASSIGN(auto a, Upload(x0.data(), x0.size() * 4));
      ANVIL_ASSERT_OK_AND_ASSIGN(auto b, Upload(x0.data(), x0.size() * 4));
      const Acts before = Device()->gemv_activations();
      Device()->set_gemv_activations(paths[path]);
      absl::Status s;
      for (int l = 0; l < kLayers && s.ok(); ++l) {
        const float* x = (l % 2 == 0 ? a : b).as<float>();
        float* y = (l % 2 == 0 ? b : a).as<float>();
        s = MatMul(Cuda(), {GetParam(), ws[l].data(), x, y, 2, d, d});
      }
      Device()->set_gemv_activations(before);
      ASSERT_THAT(s, IsOk());
      ASSERT_THAT(Device()->Synchronize(), IsOk());
      results[path].resize(2 * d);
      ASSERT_THAT((kLayers % 2 == 0 ? a : b).CopyToHost(results[path].data(), 2 * d * 4), IsOk());
    }
    EXPECT_TRUE(BitEqual(results[1], results[0])) << DTypeName(GetParam()) << " d=" << d;
    bool finite = true;
    for (float v : results[1]) finite = finite && std::isfinite(v) && v != 0.0f;
    EXPECT_TRUE(finite) << "the chain degenerated; the comparison would be weak";
  }
}

INSTANTIATE_TEST_SUITE_P(QuantTypes, CudaGemvFusedTest,
                         ::testing::Values(DType::kQ8_0, DType::kQ4_0, DType::kQ4_1),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

}  // namespace
}  // namespace anvil
