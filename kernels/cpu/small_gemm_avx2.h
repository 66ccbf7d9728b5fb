// A register-tiled AVX2 product for the small, odd-strided matrices inside the CPU backward
// kernels (attention_backward.cc): C = A * B or C += A * B, single-threaded, with A read by
// broadcasts at any strides (so A or its transpose can be passed without copying) and B, C
// row-major. The caller pads N to a multiple of 16. Only cpu/*.cc include this (they are the
// files compiled with -mavx2 -mfma -mf16c).
#ifndef ANVIL_KERNELS_CPU_SMALL_GEMM_AVX2_H_
#define ANVIL_KERNELS_CPU_SMALL_GEMM_AVX2_H_

#include <immintrin.h>

#include <cstdint>

namespace anvil::cpu {

// The operands of C[M][N] (+)= sum over k < K of A(m, k) * B[k][n].
struct SmallGemmArgs {
  int64_t m = 0, n = 0, k = 0;  // n % 16 == 0
  const float* a = nullptr;     // A(m, k) = a[m * a_m + k * a_k]
  int64_t a_m = 0, a_k = 0;
  const float* b = nullptr;  // [K][ldb], N columns used
  int64_t ldb = 0;
  float* c = nullptr;  // [M][ldc], N columns used
  int64_t ldc = 0;
  bool accumulate = false;  // C += A * B instead of C = A * B
};

// One kRows x 16 tile of C over the whole K: 2 * kRows accumulators, two B loads and kRows
// broadcasts per k (kRows = 6 keeps it FMA-bound within the 16 ymm registers). kUnitM: a_m == 1
// (A passed transposed), so the broadcasts sit at constant offsets from one pointer. Operands are
// copied to locals first: read through `g` they were reloaded on every k.
template <int kRows, bool kUnitM>
[[gnu::always_inline]] inline void SmallGemmTile(const SmallGemmArgs& g, int64_t m0, int64_t n0) {
  const int64_t k = g.k, a_m = kUnitM ? 1 : g.a_m, a_k = g.a_k, ldb = g.ldb, ldc = g.ldc;
  float* c = g.c + m0 * ldc + n0;
  __m256 acc[kRows][2];
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = g.accumulate ? _mm256_loadu_ps(c + r * ldc) : _mm256_setzero_ps();
    acc[r][1] = g.accumulate ? _mm256_loadu_ps(c + r * ldc + 8) : _mm256_setzero_ps();
  }
  const float* ap = g.a + m0 * a_m;
  const float* bp = g.b + n0;
  for (int64_t p = 0; p < k; ++p, ap += a_k, bp += ldb) {
    const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
    for (int r = 0; r < kRows; ++r) {
      const __m256 av = _mm256_broadcast_ss(ap + r * a_m);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    _mm256_storeu_ps(c + r * ldc, acc[r][0]);
    _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
  }
}

// Column tiles outer, so that one 16-wide slice of B is reused by every row tile from L1.
template <bool kUnitM>
void SmallGemmImpl(const SmallGemmArgs& g) {
  for (int64_t n0 = 0; n0 < g.n; n0 += 16) {
    int64_t m0 = 0;
    for (; m0 + 6 <= g.m; m0 += 6) SmallGemmTile<6, kUnitM>(g, m0, n0);
    switch (g.m - m0) {
      case 5:
        SmallGemmTile<5, kUnitM>(g, m0, n0);
        break;
      case 4:
        SmallGemmTile<4, kUnitM>(g, m0, n0);
        break;
      case 3:
        SmallGemmTile<3, kUnitM>(g, m0, n0);
        break;
      case 2:
        SmallGemmTile<2, kUnitM>(g, m0, n0);
        break;
      case 1:
        SmallGemmTile<1, kUnitM>(g, m0, n0);
        break;
      default:
        break;
    }
  }
}

inline void SmallGemm(const SmallGemmArgs& g) {
  if (g.a_m == 1) {
    SmallGemmImpl<true>(g);
  } else {
    SmallGemmImpl<false>(g);
  }
}

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_SMALL_GEMM_AVX2_H_
