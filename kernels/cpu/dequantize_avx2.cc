// AVX2 row dequantizers (see dequantize_avx2.h). Nibble order of Q4 blocks: byte j holds
// element j in its low nibble and element j + 16 in its high nibble.
#include "kernels/cpu/dequantize_avx2.h"

#include <immintrin.h>

#include <cstring>

#include "kernels/quantize.h"

namespace anvil::cpu {
namespace {

// 8 int8 values -> 8 floats.
inline __m256 Bytes8ToFloat(const void* p) {
  int64_t v;
  std::memcpy(&v, p, 8);
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(v)));
}

// 16 nibble bytes -> 32 unsigned 4-bit values as floats, element order, into q[4].
inline void Nibbles(const uint8_t* qs, __m256 q[4]) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(raw, mask);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
  q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
  q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
  q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
  q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
}

}  // namespace

void DequantizeRowAvx2(DType t, const void* x, float* y, int64_t k) {
  const int64_t nb = k / kQK;
  switch (t) {
    case DType::kF32:
      std::memcpy(y, x, static_cast<size_t>(k) * sizeof(float));
      return;
    case DType::kF16:
    case DType::kBF16: {
      const auto* h = static_cast<const uint16_t*>(x);
      int64_t i = 0;
      for (; i + 8 <= k; i += 8) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i));
        const __m256 f = t == DType::kF16
                             ? _mm256_cvtph_ps(v)
                             : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
        _mm256_storeu_ps(y + i, f);
      }
      if (i < k) DequantizeRow(t, h + i, y + i, k - i);
      return;
    }
    case DType::kQ8_0: {
      const auto* b = static_cast<const BlockQ8_0*>(x);
      for (int64_t i = 0; i < nb; ++i) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
        for (int j = 0; j < 4; ++j) {
          _mm256_storeu_ps(y + i * kQK + 8 * j, _mm256_mul_ps(Bytes8ToFloat(b[i].qs + 8 * j), d));
        }
      }
      return;
    }
    case DType::kQ4_0: {
      const auto* b = static_cast<const BlockQ4_0*>(x);
      const __m256 eight = _mm256_set1_ps(8.0f);
      for (int64_t i = 0; i < nb; ++i) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
        __m256 q[4];
        Nibbles(b[i].qs, q);
        // (q - 8) is an exact small integer either way.
        for (int j = 0; j < 4; ++j) {
          _mm256_storeu_ps(y + i * kQK + 8 * j, _mm256_mul_ps(_mm256_sub_ps(q[j], eight), d));
        }
      }
      return;
    }
    case DType::kQ4_1: {
      const auto* b = static_cast<const BlockQ4_1*>(x);
      for (int64_t i = 0; i < nb; ++i) {
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[i].d));
        const __m256 m = _mm256_set1_ps(_cvtsh_ss(b[i].m));
        __m256 q[4];
        Nibbles(b[i].qs, q);
        for (int j = 0; j < 4; ++j) {
          _mm256_storeu_ps(y + i * kQK + 8 * j, _mm256_add_ps(_mm256_mul_ps(q[j], d), m));
        }
      }
      return;
    }
  }
}

}  // namespace anvil::cpu
