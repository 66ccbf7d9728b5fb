// F32 weights times F32 activations, AVX2+FMA, bit-identical to the reference in both of
// llama.cpp's summation orders (kernels/reference/ggml_sum_order.h), with 16 float lanes kept as
// two ymm registers:
//  * gemm order (tinyBLAS; M >= 2, K % 16 == 0, N % 4 == 0): one 16-lane accumulator per
//    (weight row, activation row) pair, element e in lane e % 16. Register tile of 2 weight rows
//    x 3 activation rows.
//  * vec_dot order (everything else, decode included): four 16-lane accumulators, element e in
//    accumulator (e % 64) / 16; a partial last chunk leaves the lanes past K untouched; then
//    (acc0 + acc2) + (acc1 + acc3). One pair at a time.
// Both end with ReduceLanes16: the upper 8 lanes added onto the lower 8, then HorizontalSum.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/ggml_order_avx2.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {
namespace {

constexpr int kRw = 1;  // gemm order: weight rows per tile
constexpr int kRx = 6;  // gemm order: activation rows per tile

// out[i * kRx + j] = dot(w_rows[i], x[j]) in gemm order; k % 16 == 0.
void GemmOrderKernel(const float* const* w_rows, const float* const* x, int64_t k, float* out) {
  __m256 acc[kRw][kRx][2];
  for (int i = 0; i < kRw; ++i) {
    for (int j = 0; j < kRx; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
  }
  for (int64_t e = 0; e < k; e += 16) {
    for (int i = 0; i < kRw; ++i) {
      const __m256 w_lo = _mm256_loadu_ps(w_rows[i] + e);
      const __m256 w_hi = _mm256_loadu_ps(w_rows[i] + e + 8);
      for (int j = 0; j < kRx; ++j) {
        acc[i][j][0] = _mm256_fmadd_ps(w_lo, _mm256_loadu_ps(x[j] + e), acc[i][j][0]);
        acc[i][j][1] = _mm256_fmadd_ps(w_hi, _mm256_loadu_ps(x[j] + e + 8), acc[i][j][1]);
      }
    }
  }
  for (int i = 0; i < kRw; ++i) {
    for (int j = 0; j < kRx; ++j) out[i * kRx + j] = ReduceLanes16(acc[i][j][0], acc[i][j][1]);
  }
}

}  // namespace

void MatMulTileF32Avx2(const TileArgs& t) {
  const PreparedActs& x = *t.x;
  auto w_row = [&](int64_t n) {
    return reinterpret_cast<const float*>(t.w + std::min(n, t.n1 - 1) * t.row_bytes);
  };
  if (!t.f32_gemm_order) {
    for (int64_t n = t.n0; n < t.n1; ++n) {
      for (int64_t m = t.m0; m < t.m1; ++m) {
        t.y[m * t.ldy + n] = VecDotOrderF32(w_row(n), x.f + m * x.k, x.k);
      }
    }
    return;
  }
  // Rows past n1 / m1 repeat the last real row; their results are discarded. Activation rows
  // outer: a group of 3 stays in L1 while the unit's weight rows stream past from L2.
  for (int64_t m = t.m0; m < t.m1; m += kRx) {
    const float* xr[kRx];
    for (int j = 0; j < kRx; ++j) xr[j] = x.f + std::min(m + j, t.m1 - 1) * x.k;
    for (int64_t n = t.n0; n < t.n1; n += kRw) {
      const float* w_rows[kRw];
      for (int i = 0; i < kRw; ++i) w_rows[i] = w_row(n + i);
      float out[kRw * kRx];
      GemmOrderKernel(w_rows, xr, x.k, out);
      for (int i = 0; i < kRw && n + i < t.n1; ++i) {
        for (int j = 0; j < kRx && m + j < t.m1; ++j) {
          t.y[(m + j) * t.ldy + n + i] = out[i * kRx + j];
        }
      }
    }
  }
}

}  // namespace anvil::cpu
