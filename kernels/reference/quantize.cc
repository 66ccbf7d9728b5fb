// Reference quantizers/dequantizers: plain loops with the exact rounding of ggml's *_ref
// functions (roundf = half away from zero; truncating casts where ggml truncates).
#include "kernels/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/core/half.h"

namespace anvil {
namespace {

float BlockAbsMax(const float* xb) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
  return amax;
}

}  // namespace

void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    const float* xb = x + b * kQK;
    const float amax = BlockAbsMax(xb);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = FloatToHalf(d);
    for (int j = 0; j < kQK; ++j) y[b].qs[j] = static_cast<int8_t>(std::roundf(xb[j] * id));
  }
}

// Activations: llama.cpp's x86 quantizer (the one its CPU matmuls run), which multiplies by
// 127/amax and rounds half to even. Same scale d; a few elements near .5 round differently
// from the weight quantizer above.
void QuantizeActivationQ8_0(const float* x, BlockQ8_0* y, int64_t k) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    const float* xb = x + b * kQK;
    const float amax = BlockAbsMax(xb);
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[b].d = FloatToHalf(amax / 127.0f);
    for (int j = 0; j < kQK; ++j) y[b].qs[j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
  }
}

void QuantizeActivationQ8_1(const float* x, BlockQ8_1* y, int64_t k) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    const float* xb = x + b * kQK;
    const float amax = BlockAbsMax(xb);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    y[b].d = FloatToHalf(d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      const int8_t q = static_cast<int8_t>(std::nearbyint(xb[j] * id));
      y[b].qs[j] = q;
      sum += q;
    }
    y[b].s = FloatToHalf(static_cast<float>(sum) * d);
  }
}

void QuantizeRowQ4_0(const float* x, BlockQ4_0* y, int64_t k) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    const float* xb = x + b * kQK;
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
      if (amax < std::fabs(xb[j])) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = FloatToHalf(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const float a = xb[j] * id;
      const float c = xb[j + kQK / 2] * id;
      const uint8_t qa = std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(a + 8.5f)));
      const uint8_t qc = std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(c + 8.5f)));
      y[b].qs[j] = static_cast<uint8_t>(qa | (qc << 4));
    }
  }
}

void QuantizeRowQ4_1(const float* x, BlockQ4_1* y, int64_t k) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    const float* xb = x + b * kQK;
    float mn = xb[0], mx = xb[0];
    for (int j = 1; j < kQK; ++j) {
      mn = std::min(mn, xb[j]);
      mx = std::max(mx, xb[j]);
    }
    const float d = (mx - mn) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = FloatToHalf(d);
    y[b].m = FloatToHalf(mn);
    for (int j = 0; j < kQK / 2; ++j) {
      const float a = (xb[j] - mn) * id;
      const float c = (xb[j + kQK / 2] - mn) * id;
      const uint8_t qa = std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(a + 0.5f)));
      const uint8_t qc = std::min<uint8_t>(15, static_cast<uint8_t>(static_cast<int8_t>(c + 0.5f)));
      y[b].qs[j] = static_cast<uint8_t>(qa | (qc << 4));
    }
  }
}

void DequantizeRow(DType t, const void* x, float* y, int64_t k) {
  switch (t) {
    case DType::kF32:
      std::memcpy(y, x, static_cast<size_t>(k) * sizeof(float));
      return;
    case DType::kF16: {
      const auto* h = static_cast<const uint16_t*>(x);
      for (int64_t i = 0; i < k; ++i) y[i] = HalfToFloat(h[i]);
      return;
    }
    case DType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(x);
      for (int64_t i = 0; i < k; ++i) y[i] = Bf16ToFloat(h[i]);
      return;
    }
    case DType::kQ8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(x);
      for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = HalfToFloat(b[i].d);
        for (int j = 0; j < kQK; ++j) y[i * kQK + j] = b[i].qs[j] * d;
      }
      return;
    }
    case DType::kQ4_0: {
      const auto* b = static_cast<const BlockQ4_0*>(x);
      for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = HalfToFloat(b[i].d);
        for (int j = 0; j < kQK / 2; ++j) {
          y[i * kQK + j] = ((b[i].qs[j] & 0x0F) - 8) * d;
          y[i * kQK + j + kQK / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
      }
      return;
    }
    case DType::kQ4_1: {
      const auto* b = static_cast<const BlockQ4_1*>(x);
      for (int64_t i = 0; i < k / kQK; ++i) {
        const float d = HalfToFloat(b[i].d);
        const float m = HalfToFloat(b[i].m);
        for (int j = 0; j < kQK / 2; ++j) {
          y[i * kQK + j] = (b[i].qs[j] & 0x0F) * d + m;
          y[i * kQK + j + kQK / 2] = (b[i].qs[j] >> 4) * d + m;
        }
      }
      return;
    }
  }
}

}  // namespace anvil
