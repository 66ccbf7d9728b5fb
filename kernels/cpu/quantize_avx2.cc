// Vectorized activation preparation for the CPU matmul: Q8_0/Q8_1 quantization bit-identical to
// the reference activation quantizers (same amax, same id = 127/amax multiply, round half to
// even), and F16/BF16 rounding. Scales go through fp16 with the scalar helpers of core/half.h.
#include <immintrin.h>

#include <cstdint>

#include "kernels/core/half.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/dtype.h"

namespace anvil::cpu {
namespace {

// Quantizes one block of 32 floats to int8 (stored to qs); returns the unrounded scale
// d = amax/127 and, if sum_out is set, the sum of the quantized values.
inline float QuantizeBlock(const float* x, int8_t* qs, int* sum_out) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    amax = _mm256_max_ps(amax, _mm256_and_ps(v[i], abs_mask));
  }
  const float amax_s = HorizontalMax(amax);
  const float d = amax_s / 127.0f;
  const __m256 idv = _mm256_set1_ps(amax_s != 0.0f ? 127.0f / amax_s : 0.0f);
  __m256i q[4];
  for (int i = 0; i < 4; ++i) {
    // nearbyint in the default rounding mode: round half to even.
    q[i] = _mm256_cvtps_epi32(
        _mm256_round_ps(_mm256_mul_ps(v[i], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  if (sum_out != nullptr) {
    *sum_out = HorizontalSumI32(
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
  }
  // Packing interleaves 128-bit lanes: [q0 lo, q1 lo, q2 lo, q3 lo | q0 hi, ...] in 4-element
  // groups; the dword permute restores element order.
  const __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
  const __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
  const __m256i p8 = _mm256_packs_epi16(p16a, p16b);
  const __m256i ordered =
      _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), ordered);
  return d;
}

}  // namespace

void QuantizeActsQ8_0(const float* x, int64_t k, int8_t* qs, float* d) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    d[b] = HalfToFloat(FloatToHalf(QuantizeBlock(x + b * kQK, qs + b * kQK, nullptr)));
  }
}

void QuantizeActsQ8_1(const float* x, int64_t k, int8_t* qs, float* d, float* s) {
  for (int64_t b = 0; b < k / kQK; ++b) {
    int sum = 0;
    const float db = QuantizeBlock(x + b * kQK, qs + b * kQK, &sum);
    d[b] = HalfToFloat(FloatToHalf(db));
    s[b] = HalfToFloat(FloatToHalf(static_cast<float>(sum) * db));
  }
}

void RoundActsF16(const float* x, int64_t k, float* out) {
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  for (; i < k; ++i) out[i] = HalfToFloat(FloatToHalf(x[i]));
}

void RoundActsBf16(const float* x, int64_t k, float* out) {
  int64_t i = 0;
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i round_bias = _mm256_set1_epi32(0x7FFF);
  const __m256i high_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  const __m256i abs_mask = _mm256_set1_epi32(0x7FFFFFFF);
  const __m256i inf_bits = _mm256_set1_epi32(0x7F800000);
  const __m256i quiet = _mm256_set1_epi32(64 << 16);
  for (; i + 8 <= k; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    // Round to nearest even on the upper 16 bits; NaNs keep their payload and become quiet.
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i rounded =
        _mm256_and_si256(_mm256_add_epi32(u, _mm256_add_epi32(round_bias, lsb)), high_mask);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf_bits);
    const __m256i nan_val = _mm256_or_si256(_mm256_and_si256(u, high_mask), quiet);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_blendv_epi8(rounded, nan_val, nan));
  }
  for (; i < k; ++i) out[i] = Bf16ToFloat(FloatToBf16(x[i]));
}

}  // namespace anvil::cpu
