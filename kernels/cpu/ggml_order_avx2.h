// llama.cpp's F32 dot-product summation orders (kernels/reference/ggml_sum_order.h) with AVX2:
// its 16-lane accumulators are kept as pairs of ymm registers, lane by lane the same fused
// multiply-adds and the same reduction, so results are bit-identical to the reference's.
#ifndef ANVIL_KERNELS_CPU_GGML_ORDER_AVX2_H_
#define ANVIL_KERNELS_CPU_GGML_ORDER_AVX2_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {

// ReduceLanes16 of the 16 lanes lo (0..7) and hi (8..15): upper 8 onto lower 8, then 4 onto 4,
// then (u0 + u2) + (u1 + u3), which is HorizontalSum's order.
inline float ReduceLanes16(__m256 lo, __m256 hi) { return HorizontalSum(_mm256_add_ps(hi, lo)); }

// Lanes [0, n) of 8 set (n may be <= 0 or >= 8).
inline __m256 LaneMask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int c = static_cast<int>(std::clamp<int64_t>(n, 0, 8));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(c), idx));
}

// dot(w, x) over k elements in ggml_vec_dot_f32's order: four 16-lane accumulators, element e in
// accumulator (e % 64) / 16, lane e % 16; a partial last chunk leaves the lanes past k untouched;
// then (acc0 + acc2) + (acc1 + acc3) and ReduceLanes16.
inline float VecDotOrderF32(const float* w, const float* x, int64_t k) {
  __m256 acc[4][2];
  for (auto& a : acc) a[0] = a[1] = _mm256_setzero_ps();
  const int64_t full = k / 64 * 64;
  for (int64_t e = 0; e < full; e += 64) {
    for (int c = 0; c < 4; ++c) {
      for (int h = 0; h < 2; ++h) {
        const int64_t o = e + 16 * c + 8 * h;
        acc[c][h] = _mm256_fmadd_ps(_mm256_loadu_ps(w + o), _mm256_loadu_ps(x + o), acc[c][h]);
      }
    }
  }
  for (int64_t e = full; e < k; e += 16) {
    const int c = static_cast<int>((e % 64) / 16);
    for (int h = 0; h < 2; ++h) {
      const int64_t o = e + 8 * h;
      const __m256 mask = LaneMask(k - o);
      const __m256i imask = _mm256_castps_si256(mask);
      const __m256 prod = _mm256_fmadd_ps(_mm256_maskload_ps(w + o, imask),
                                          _mm256_maskload_ps(x + o, imask), acc[c][h]);
      acc[c][h] = _mm256_blendv_ps(acc[c][h], prod, mask);
    }
  }
  const __m256 lo =
      _mm256_add_ps(_mm256_add_ps(acc[0][0], acc[2][0]), _mm256_add_ps(acc[1][0], acc[3][0]));
  const __m256 hi =
      _mm256_add_ps(_mm256_add_ps(acc[0][1], acc[2][1]), _mm256_add_ps(acc[1][1], acc[3][1]));
  return ReduceLanes16(lo, hi);
}

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_GGML_ORDER_AVX2_H_
