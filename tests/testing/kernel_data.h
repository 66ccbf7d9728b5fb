// Seeded random data and weight matrices in every DType for kernel tests and benchmarks (no
// test-framework dependency, so bench/ can use it too).
#ifndef ANVIL_TESTS_TESTING_KERNEL_DATA_H_
#define ANVIL_TESTS_TESTING_KERNEL_DATA_H_

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/core/half.h"
#include "kernels/dtype.h"
#include "kernels/quantize.h"

namespace anvil::testing {

inline std::vector<float> RandomFloats(int64_t n, uint32_t seed, float lo = -1.0f,
                                       float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// Weight matrix [n][k] of type t made from `f` ([n][k] floats), in GGUF row layout.
inline std::vector<uint8_t> MakeWeights(DType t, const std::vector<float>& f, int64_t n,
                                        int64_t k) {
  const int64_t row_bytes = k / BlockElems(t) * BlockBytes(t);
  std::vector<uint8_t> w(static_cast<size_t>(n * row_bytes));
  for (int64_t r = 0; r < n; ++r) {
    const float* x = f.data() + r * k;
    uint8_t* dst = w.data() + r * row_bytes;
    switch (t) {
      case DType::kF32:
        std::memcpy(dst, x, static_cast<size_t>(k) * sizeof(float));
        break;
      case DType::kF16:
      case DType::kBF16:
        for (int64_t i = 0; i < k; ++i) {
          const uint16_t h = t == DType::kF16 ? FloatToHalf(x[i]) : FloatToBf16(x[i]);
          std::memcpy(dst + 2 * i, &h, 2);
        }
        break;
      case DType::kQ8_0:
        QuantizeRowQ8_0(x, reinterpret_cast<BlockQ8_0*>(dst), k);
        break;
      case DType::kQ4_0:
        QuantizeRowQ4_0(x, reinterpret_cast<BlockQ4_0*>(dst), k);
        break;
      case DType::kQ4_1:
        QuantizeRowQ4_1(x, reinterpret_cast<BlockQ4_1*>(dst), k);
        break;
    }
  }
  return w;
}

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_KERNEL_DATA_H_
