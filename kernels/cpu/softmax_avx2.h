// AVX2 row reductions shared by the CPU softmax, log-sum-exp and cross-entropy kernels
// (cpu/softmax.cc, cpu/cross_entropy.cc): the row maximum and the sum of exp(z - max). Only
// cpu/*.cc include this (they are the files compiled with -mavx2 -mfma -mf16c).
//
// Accuracy against the reference (double exp and sums, kernels/reference/softmax.cc):
//  - exp is ExpGgmlAvx2 (simd_avx2.h). Its arguments here are z - max <= 0; checked against
//    double exp for every float in [-87.3, 0], its largest error is 2.24 ulp (relative error
//    below 2.7e-7); below -87.3 results are subnormal or 0, far under any atol.
//  - z - max is rounded to float: relative error about |z - max| * 6e-8 in that one term,
//    which matters only for terms too small to move the sum.
//  - the sum runs in 32 float lanes over blocks of kSumBlock elements (each lane adds at most
//    32 terms of size <= 1, relative error <= ~2e-6 worst case, ~1e-7 typical), and the block
//    sums are added in double, so the error does not grow with V.
#ifndef ANVIL_KERNELS_CPU_SOFTMAX_AVX2_H_
#define ANVIL_KERNELS_CPU_SOFTMAX_AVX2_H_

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {

// Lanes [0, n) of a vector set (all bits), the others clear; 0 < n < 8.
inline __m256i TailMask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Lanes [0, n) of z = scale * x[0 .. n), every other lane -inf; 0 < n < 8. maskload reads
// nothing past x + n.
inline __m256 LoadScaledTail(const float* x, int64_t n, __m256 scale) {
  const __m256i mask = TailMask(n);
  const __m256 z = _mm256_mul_ps(_mm256_maskload_ps(x, mask), scale);
  return _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), z, _mm256_castsi256_ps(mask));
}

// max over c of scale * x[c], each product rounded to float exactly as the reference does
// (x: [n], n >= 1). NaN entries may or may not win; either way the sum below turns NaN.
inline float RowMaxAvx2(const float* x, int64_t n, float scale) {
  const __m256 s = _mm256_set1_ps(scale);
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_ps(m0, _mm256_mul_ps(_mm256_loadu_ps(x + i), s));
    m1 = _mm256_max_ps(m1, _mm256_mul_ps(_mm256_loadu_ps(x + i + 8), s));
    m2 = _mm256_max_ps(m2, _mm256_mul_ps(_mm256_loadu_ps(x + i + 16), s));
    m3 = _mm256_max_ps(m3, _mm256_mul_ps(_mm256_loadu_ps(x + i + 24), s));
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_mul_ps(_mm256_loadu_ps(x + i), s));
  if (i < n) m1 = _mm256_max_ps(m1, LoadScaledTail(x + i, n - i, s));
  return HorizontalMax(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
}

// Elements per float partial sum before it is folded into the double total (32 per lane).
constexpr int64_t kSumBlock = 1024;

// Adds the 8 lanes of `v` to the double total `acc` (4 lanes).
inline __m256d AddToDouble(__m256d acc, __m256 v) {
  acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

// sum over c of e^(scale * x[c] - mx) (x: [n], n >= 1); with kStore, also writes each term to
// y[c] (y: [n], may alias x: every vector is loaded before its slot is written).
template <bool kStore>
double RowExpSumAvx2(const float* x, int64_t n, float scale, float mx, float* y) {
  const __m256 s = _mm256_set1_ps(scale), m = _mm256_set1_ps(mx);
  const auto term = [&](__m256 z) { return ExpGgmlAvx2(_mm256_sub_ps(z, m)); };
  __m256d total = _mm256_setzero_pd();
  for (int64_t b = 0; b < n; b += kSumBlock) {
    const int64_t e = std::min(n, b + kSumBlock);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = b;
    for (; i + 32 <= e; i += 32) {
      const __m256 t0 = term(_mm256_mul_ps(_mm256_loadu_ps(x + i), s));
      const __m256 t1 = term(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), s));
      const __m256 t2 = term(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), s));
      const __m256 t3 = term(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), s));
      if constexpr (kStore) {
        _mm256_storeu_ps(y + i, t0);
        _mm256_storeu_ps(y + i + 8, t1);
        _mm256_storeu_ps(y + i + 16, t2);
        _mm256_storeu_ps(y + i + 24, t3);
      }
      a0 = _mm256_add_ps(a0, t0);
      a1 = _mm256_add_ps(a1, t1);
      a2 = _mm256_add_ps(a2, t2);
      a3 = _mm256_add_ps(a3, t3);
    }
    for (; i + 8 <= e; i += 8) {
      const __m256 t = term(_mm256_mul_ps(_mm256_loadu_ps(x + i), s));
      if constexpr (kStore) _mm256_storeu_ps(y + i, t);
      a0 = _mm256_add_ps(a0, t);
    }
    if (i < e) {
      // Masked-off lanes hold -inf, whose term is 0 (or NaN only when mx is not finite, and
      // then the row is NaN anyway); zero them regardless so the sum sees only real terms.
      const __m256i mask = TailMask(e - i);
      const __m256 t =
          _mm256_and_ps(term(LoadScaledTail(x + i, e - i, s)), _mm256_castsi256_ps(mask));
      if constexpr (kStore) _mm256_maskstore_ps(y + i, mask, t);
      a1 = _mm256_add_ps(a1, t);
    }
    total = AddToDouble(total, _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, total);
  return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
}

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_SOFTMAX_AVX2_H_
