// Small AVX2/FMA building blocks shared by the CPU kernels: horizontal sums and maxima, and
// ggml's vectorized exp. Only cpu/*.cc include this (they are the
// files compiled with -mavx2 -mfma -mf16c).
#ifndef ANVIL_KERNELS_CPU_SIMD_AVX2_H_
#define ANVIL_KERNELS_CPU_SIMD_AVX2_H_

#include <immintrin.h>

#include <cmath>

namespace anvil::cpu {

// Sum of the 8 lanes.
inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int HorizontalSumI32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float HorizontalMax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Sums of four vectors at once: lane i of the result is the horizontal sum of v[i].
inline __m128 HorizontalSum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_hadd_ps(a, b);  // a01 a23 b01 b23 | a45 a67 b45 b67
  const __m256 cd = _mm256_hadd_ps(c, d);
  const __m256 abcd = _mm256_hadd_ps(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

// e^x lane-wise with exactly the operations of ggml's vectorized expf (the reference's
// ExpLikeGgml, kernels/reference/layer_ops.cc), so results are bit-identical to it: x = n*ln2 + b
// with n = round(x/ln2) by the 1.5*2^23 shifter trick, a degree-5 polynomial j ~ e^b in that
// fused-multiply-add grouping, and e^x = j * 2^n rounded once (ldexp). |n| > 192 gives 0 or
// +inf; NaN stays NaN. The power of two is applied as 2^(n/2) (exact, j * 2^(n/2) stays normal)
// then 2^(n - n/2), the one rounding step, so subnormal and overflowing results match ldexp.
inline __m256 ExpGgmlAvx2(__m256 x) {
  const __m256 shifter = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shifter);
  const __m256 n = _mm256_sub_ps(z, shifter);
  __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x);
  b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f), b);
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(
          _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
          _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
  const __m256 abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
  const __m256 big = _mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0f), _CMP_GT_OQ);
  const __m256i ni = _mm256_cvtps_epi32(_mm256_andnot_ps(big, n));  // in [-192, 192]
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  __m256 r = _mm256_mul_ps(_mm256_mul_ps(j, s1), s2);
  // |n| > 192: 0 for n <= 0, +inf otherwise. NaN (unordered compare above is false): n itself.
  const __m256 inf_or_zero =
      _mm256_and_ps(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(INFINITY));
  r = _mm256_blendv_ps(r, inf_or_zero, big);
  return _mm256_blendv_ps(r, n, _mm256_cmp_ps(n, n, _CMP_UNORD_Q));
}

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_SIMD_AVX2_H_
