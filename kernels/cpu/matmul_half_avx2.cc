// F16 / BF16 weights times float activations (already rounded to F16 / BF16), AVX2+FMA, within
// tolerance of the reference (which sums in double). Register tile: RW weight rows x RX
// activation rows, one 8-lane accumulator per pair, stepping 8 elements of K at a time; each
// weight vector is widened once per step and reused across the RX rows. The K % 8 tail is summed
// in scalar. (F32 weights: matmul_f32_avx2.cc.)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "kernels/core/half.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {
namespace {

struct LoadF16 {
  static __m256 Load(const uint8_t* row, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(
        reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + i)));
  }
  static float Scalar(const uint8_t* row, int64_t i) {
    return HalfToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
  }
};
struct LoadBf16 {
  static __m256 Load(const uint8_t* row, int64_t i) {
    const __m128i h = _mm_loadu_si128(
        reinterpret_cast<const __m128i*>(reinterpret_cast<const uint16_t*>(row) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static float Scalar(const uint8_t* row, int64_t i) {
    return Bf16ToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
  }
};

// out[i * RX + j] = dot(weight row i, activation row j) over k elements.
template <class Loader, int RW, int RX>
void TileKernel(const uint8_t* const* w_rows, const float* const* x, int64_t k, float* out) {
  __m256 acc[RW][RX];
  for (int i = 0; i < RW; ++i) {
    for (int j = 0; j < RX; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  int64_t e = 0;
  for (; e + 8 <= k; e += 8) {
    __m256 xv[RX];
    for (int j = 0; j < RX; ++j) xv[j] = _mm256_loadu_ps(x[j] + e);
    for (int i = 0; i < RW; ++i) {
      const __m256 wv = Loader::Load(w_rows[i], e);
      for (int j = 0; j < RX; ++j) acc[i][j] = _mm256_fmadd_ps(wv, xv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < RW; ++i) {
    for (int j = 0; j < RX; ++j) {
      float s = HorizontalSum(acc[i][j]);
      for (int64_t r = e; r < k; ++r) s += Loader::Scalar(w_rows[i], r) * x[j][r];
      out[i * RX + j] = s;
    }
  }
}

using KernelFn = void (*)(const uint8_t* const*, const float* const*, int64_t, float*);

template <class Loader, int RW>
KernelFn PickRx(int rx) {
  switch (rx) {
    case 1:
      return TileKernel<Loader, RW, 1>;
    case 2:
      return TileKernel<Loader, RW, 2>;
    default:
      return TileKernel<Loader, RW, 3>;
  }
}

constexpr int kMaxRx = 3;

template <class Loader>
void TileFloat(const TileArgs& t) {
  const PreparedActs& x = *t.x;
  constexpr int rw_max = 4;
  for (int64_t n = t.n0; n < t.n1; n += rw_max) {
    const int rw = static_cast<int>(std::min<int64_t>(rw_max, t.n1 - n));
    const uint8_t* w_rows[4];
    for (int i = 0; i < rw; ++i) w_rows[i] = t.w + (n + i) * t.row_bytes;
    for (int64_t m = t.m0; m < t.m1; m += kMaxRx) {
      const int rx = static_cast<int>(std::min<int64_t>(kMaxRx, t.m1 - m));
      const float* xr[kMaxRx];
      for (int j = 0; j < rx; ++j) xr[j] = x.f + (m + j) * x.k;
      float out[4 * kMaxRx];
      KernelFn fn;
      switch (rw) {
        case 1:
          fn = PickRx<Loader, 1>(rx);
          break;
        case 2:
          fn = PickRx<Loader, 2>(rx);
          break;
        case 3:
          fn = PickRx<Loader, 3>(rx);
          break;
        default:
          fn = PickRx<Loader, 4>(rx);
          break;
      }
      fn(w_rows, xr, x.k, out);
      for (int i = 0; i < rw; ++i) {
        for (int j = 0; j < rx; ++j) t.y[(m + j) * t.ldy + n + i] = out[i * rx + j];
      }
    }
  }
}

}  // namespace

void MatMulTileF16Avx2(const TileArgs& t) { TileFloat<LoadF16>(t); }
void MatMulTileBf16Avx2(const TileArgs& t) { TileFloat<LoadBf16>(t); }

}  // namespace anvil::cpu
