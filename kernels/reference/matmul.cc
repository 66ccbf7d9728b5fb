// Reference matmul: for each activation row, convert it to the weight type's dot-product
// partner (F16/BF16 rounding, Q8_0 or Q8_1 quantization, as llama.cpp's vec_dot_type), then
// one dot product per weight row.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/core/half.h"
#include "kernels/quantize.h"
#include "kernels/reference/reference.h"

namespace anvil::reference {
namespace {

float DotF32(const float* w, const float* x, int64_t k) {
  float s = 0.0f;
  for (int64_t i = 0; i < k; ++i) s += w[i] * x[i];
  return s;
}

// F16/BF16: both operands are 16-bit floats; products summed in double as ggml's scalar path.
float DotHalf(const uint16_t* w, const float* x_rounded, int64_t k, bool bf16) {
  double s = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    const float wf = bf16 ? Bf16ToFloat(w[i]) : HalfToFloat(w[i]);
    s += static_cast<double>(wf * x_rounded[i]);
  }
  return static_cast<float>(s);
}

float DotQ8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t nb) {
  float s = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += w[b].qs[j] * x[b].qs[j];
    s += sumi * (HalfToFloat(w[b].d) * HalfToFloat(x[b].d));
  }
  return s;
}

float DotQ4_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t nb) {
  float s = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi += ((w[b].qs[j] & 0x0F) - 8) * x[b].qs[j];
      sumi += ((w[b].qs[j] >> 4) - 8) * x[b].qs[j + kQK / 2];
    }
    s += sumi * (HalfToFloat(w[b].d) * HalfToFloat(x[b].d));
  }
  return s;
}

float DotQ4_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t nb) {
  float s = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    int sumi = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi += (w[b].qs[j] & 0x0F) * x[b].qs[j];
      sumi += (w[b].qs[j] >> 4) * x[b].qs[j + kQK / 2];
    }
    s += (HalfToFloat(w[b].d) * HalfToFloat(x[b].d)) * sumi +
         HalfToFloat(w[b].m) * HalfToFloat(x[b].s);
  }
  return s;
}

}  // namespace

absl::Status MatMul(const MatMulArgs& a) {
  if (a.w == nullptr || a.x == nullptr || a.y == nullptr || a.m < 0 || a.n < 0 || a.k < 0) {
    return absl::InvalidArgumentError("matmul: null pointer or negative shape");
  }
  if (a.k % BlockElems(a.w_type) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("matmul: K=", a.k, " is not a multiple of the ",
                                              DTypeName(a.w_type), " block size"));
  }
  const int64_t row_bytes = a.k / BlockElems(a.w_type) * BlockBytes(a.w_type);
  const int64_t nb = a.k / kQK;
  const auto* wbytes = static_cast<const uint8_t*>(a.w);
  std::vector<float> xr(static_cast<size_t>(a.k));
  std::vector<BlockQ8_0> x8(static_cast<size_t>(nb));
  std::vector<BlockQ8_1> x81(static_cast<size_t>(nb));
  for (int64_t i = 0; i < a.m; ++i) {
    const float* x = a.x + i * a.k;
    switch (a.w_type) {
      case DType::kF16:
        for (int64_t j = 0; j < a.k; ++j) xr[j] = HalfToFloat(FloatToHalf(x[j]));
        break;
      case DType::kBF16:
        for (int64_t j = 0; j < a.k; ++j) xr[j] = Bf16ToFloat(FloatToBf16(x[j]));
        break;
      case DType::kQ8_0:
      case DType::kQ4_0:
        QuantizeRowQ8_0(x, x8.data(), a.k);
        break;
      case DType::kQ4_1:
        QuantizeRowQ8_1(x, x81.data(), a.k);
        break;
      case DType::kF32:
        break;
    }
    for (int64_t n = 0; n < a.n; ++n) {
      const uint8_t* w = wbytes + n * row_bytes;
      float r = 0.0f;
      switch (a.w_type) {
        case DType::kF32:
          r = DotF32(reinterpret_cast<const float*>(w), x, a.k);
          break;
        case DType::kF16:
          r = DotHalf(reinterpret_cast<const uint16_t*>(w), xr.data(), a.k, false);
          break;
        case DType::kBF16:
          r = DotHalf(reinterpret_cast<const uint16_t*>(w), xr.data(), a.k, true);
          break;
        case DType::kQ8_0:
          r = DotQ8_0(reinterpret_cast<const BlockQ8_0*>(w), x8.data(), nb);
          break;
        case DType::kQ4_0:
          r = DotQ4_0(reinterpret_cast<const BlockQ4_0*>(w), x8.data(), nb);
          break;
        case DType::kQ4_1:
          r = DotQ4_1(reinterpret_cast<const BlockQ4_1*>(w), x81.data(), nb);
          break;
      }
      a.y[i * a.n + n] = r;
    }
  }
  return absl::OkStatus();
}

}  // namespace anvil::reference
