// Attention over paged K/V blocks that keep their keys in lanes (AttentionArgs::
// blocks_transposed with 16-row blocks): element (key s, dim i) of kv head hk lives at
// block[(hk * D + i) * 16 + s % 16], so one 512-bit load holds dim i of a block's 16 keys.
// This file alone is compiled with -mavx512f/bw/vl/dq; callers check HasAvx512Vnni().
//
// The arithmetic per output element is the reference's (see attention.cc), only vectorized
// across keys instead of along the head dim:
//  * a score is VecDotOrderF32 over D: products of dim j and j + 64r in slot j = 16c + l
//    (c = accumulator, l = lane), fused over r; then (c0 + c2) + (c1 + c3) per lane and
//    ReduceLanes16. Here every slot is a vector over 16 keys, and the same sums run vertically.
//  * P*V accumulates key s into lane s % 16 of accumulator (s % 64) / 16 (vec_dot order, one
//    query) or of the only accumulator (tinyBLAS order, T >= 2). A block is 16 keys, so lane
//    s % 16 is the vector's lane and the accumulator is the block's index % 4 (or 0). The 16
//    lanes of 16 output dims are then reduced together by a shuffle tree that adds the same
//    pairs as ReduceLanes16.
// Lanes past the last key are never added (masked fma) and never enter the maximum.
//
// Everything but the two entry points is in an anonymous namespace, so no inline function
// compiled here for AVX-512 can be picked by the linker for code that runs on other CPUs.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels/cpu/attention_lanes.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512DQ__)
#error "attention_lanes_avx512.cc must be compiled with -mavx512{f,bw,vl,dq}"
#endif

namespace anvil::cpu {
namespace {

constexpr int64_t kKeys = kLaneBlockKeys;
static_assert(kKeys == 16, "one 512-bit vector of keys per block");

__mmask16 KeyMask(int64_t keys) {
  return keys >= kKeys ? static_cast<__mmask16>(0xFFFF)
                       : static_cast<__mmask16>((1u << static_cast<unsigned>(keys)) - 1u);
}

// 16 keys' values of one dim, widened to float (F16 blocks exactly); keys outside `m` read as 0.
inline __attribute__((always_inline)) __m512 Load16(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
inline __attribute__((always_inline)) __m512 Load16(const uint16_t* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __attribute__((always_inline)) __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
inline __attribute__((always_inline)) __m512 Load16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Slot j of the score of 16 keys: q[j] * k[j], then fused with q[j + 64r] * k[j + 64r] for the
// rounds r < D / 64 (kRounds of them, or `rounds` when kRounds is 0). kt: the block's [D][16]
// rows of this kv head; keys outside `m` read as 0.
template <int kRounds, class T>
inline __attribute__((always_inline)) __m512 Slot(const float* q, const T* kt, int64_t rounds,
                                                  int j, __mmask16 m) {
  __m512 acc = _mm512_mul_ps(_mm512_set1_ps(q[j]), Load16(kt + j * kKeys, m));
  const int64_t n = kRounds > 0 ? kRounds : rounds;
#pragma GCC unroll 4
  for (int64_t r = 1; r < n; ++r) {
    acc = _mm512_fmadd_ps(_mm512_set1_ps(q[64 * r + j]), Load16(kt + (64 * r + j) * kKeys, m),
                          acc);
  }
  return acc;
}

template <int kRounds, class T>
float Scores(const float* q, const T* const* blocks, int64_t hk, int64_t d, int64_t n,
             float scale, float* e) {
  __m512 mx = _mm512_set1_ps(-INFINITY);
  const __m512 sc = _mm512_set1_ps(scale);
  const int64_t nb = (n + kKeys - 1) / kKeys;
  for (int64_t b = 0; b < nb; ++b) {
    const T* kt = blocks[b] + hk * d * kKeys;
    const __mmask16 m = KeyMask(n - b * kKeys);
    auto slot = [&](int j) { return Slot<kRounds>(q, kt, d / 64, j, m); };
    // t_l = hi_l + lo_l of VecDotOrderF32By64, as named values (an array of them GCC keeps
    // in memory).
    auto t = [&](int l) {
      const __m512 lo = _mm512_add_ps(_mm512_add_ps(slot(l), slot(32 + l)),
                                      _mm512_add_ps(slot(16 + l), slot(48 + l)));
      const __m512 hi = _mm512_add_ps(_mm512_add_ps(slot(8 + l), slot(40 + l)),
                                      _mm512_add_ps(slot(24 + l), slot(56 + l)));
      return _mm512_add_ps(hi, lo);
    };
    const __m512 t0 = t(0), t1 = t(1), t2 = t(2), t3 = t(3);
    const __m512 u0 = _mm512_add_ps(t(4), t0), u1 = _mm512_add_ps(t(5), t1);
    const __m512 u2 = _mm512_add_ps(t(6), t2), u3 = _mm512_add_ps(t(7), t3);
    const __m512 s =
        _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(u0, u2), _mm512_add_ps(u1, u3)), sc);
    mx = _mm512_mask_max_ps(mx, m, mx, s);
    _mm512_storeu_ps(e + b * kKeys, s);
  }
  return _mm512_reduce_max_ps(mx);
}

// ReduceLanes16 of 16 vectors at once: lane m of the result is ReduceLanes16(L[m]), with
// L[m] stored at x[4 * (m % 4) + m / 4] (the tree below leaves its results in that order).
// Each step adds exactly the pairs ReduceLanes16 adds: upper 8 lanes onto lower 8, 4 onto 4,
// then (u0 + u2) + (u1 + u3).
__m512 ReduceLanes16x16(const __m512* x) {
  __m512 m[8], n[4], p[2];
  for (int k = 0; k < 8; ++k) {  // lanes 0-7: t of x[2k]; 8-15: t of x[2k + 1]
    const __m512 lo = _mm512_shuffle_f32x4(x[2 * k], x[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 hi = _mm512_shuffle_f32x4(x[2 * k], x[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2));
    m[k] = _mm512_add_ps(hi, lo);
  }
  for (int k = 0; k < 4; ++k) {  // quad q: u of x[4k + q]
    const __m512 lo = _mm512_shuffle_f32x4(m[2 * k], m[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 hi = _mm512_shuffle_f32x4(m[2 * k], m[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1));
    n[k] = _mm512_add_ps(hi, lo);
  }
  for (int k = 0; k < 2; ++k) {  // quad q: (u0 + u2, u1 + u3) of x[8k + q], then of x[8k + 4 + q]
    const __m512 a = _mm512_shuffle_ps(n[2 * k], n[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0));
    const __m512 b = _mm512_shuffle_ps(n[2 * k], n[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2));
    p[k] = _mm512_add_ps(a, b);
  }
  const __m512 a = _mm512_shuffle_ps(p[0], p[1], _MM_SHUFFLE(2, 0, 2, 0));
  const __m512 b = _mm512_shuffle_ps(p[0], p[1], _MM_SHUFFLE(3, 1, 3, 1));
  return _mm512_add_ps(a, b);  // lane 4q + r: x[q + 4r]
}

// out_g[i] for kHeads heads sharing a kv head; kAccs = 4 (vec_dot order) or 1 (tinyBLAS).
template <int kHeads, int kAccs, class T>
void WeightedSum(const float* p, int64_t p_stride, const T* const* blocks, int64_t hk,
                 int64_t d, int64_t n, float* out, int64_t out_stride) {
  const int64_t nb = (n + kKeys - 1) / kKeys;
  const __mmask16 last = KeyMask(n - (nb - 1) * kKeys);
  alignas(64) __m512 lanes[kHeads][16];
  for (int64_t i0 = 0; i0 < d; i0 += 16) {
    for (int ii = 0; ii < 16; ++ii) {
      const int64_t off = (hk * d + i0 + ii) * kKeys;
      __m512 acc[kHeads][kAccs];
      for (int g = 0; g < kHeads; ++g) {
        for (int c = 0; c < kAccs; ++c) acc[g][c] = _mm512_setzero_ps();
      }
      int64_t b = 0;
      for (; b + kAccs < nb; b += kAccs) {  // whole rounds before the last block
#pragma GCC unroll 4
        for (int c = 0; c < kAccs; ++c) {
          const __m512 v = Load16(blocks[b + c] + off);
#pragma GCC unroll 4
          for (int g = 0; g < kHeads; ++g) {
            acc[g][c] = _mm512_fmadd_ps(v, _mm512_loadu_ps(p + g * p_stride + (b + c) * kKeys),
                                        acc[g][c]);
          }
        }
      }
#pragma GCC unroll 4
      for (int c = 0; c < kAccs; ++c) {  // the last round, its last block masked
        if (b + c >= nb) break;
        const __mmask16 m = b + c == nb - 1 ? last : static_cast<__mmask16>(0xFFFF);
        const __m512 v = Load16(blocks[b + c] + off, m);
#pragma GCC unroll 4
        for (int g = 0; g < kHeads; ++g) {
          acc[g][c] = _mm512_mask3_fmadd_ps(
              v, _mm512_maskz_loadu_ps(m, p + g * p_stride + (b + c) * kKeys), acc[g][c], m);
        }
      }
      const int slot = 4 * (ii % 4) + ii / 4;
      for (int g = 0; g < kHeads; ++g) {
        lanes[g][slot] = kAccs == 4 ? _mm512_add_ps(_mm512_add_ps(acc[g][0], acc[g][kAccs / 2]),
                                                    _mm512_add_ps(acc[g][kAccs / 4],
                                                                  acc[g][kAccs - 1]))
                                    : acc[g][0];
      }
    }
    for (int g = 0; g < kHeads; ++g) {
      _mm512_storeu_ps(out + g * out_stride + i0, ReduceLanes16x16(lanes[g]));
    }
  }
}

template <int kAccs, class T>
void WeightedSumHeads(const float* p, int64_t p_stride, int heads, const T* const* blocks,
                      int64_t hk, int64_t d, int64_t n, float* out, int64_t out_stride) {
  for (int g = 0; g < heads; g += 4) {
    const float* pg = p + g * p_stride;
    float* og = out + g * out_stride;
    switch (heads - g >= 4 ? 4 : heads - g) {
      case 1:
        WeightedSum<1, kAccs>(pg, p_stride, blocks, hk, d, n, og, out_stride);
        break;
      case 2:
        WeightedSum<2, kAccs>(pg, p_stride, blocks, hk, d, n, og, out_stride);
        break;
      case 3:
        WeightedSum<3, kAccs>(pg, p_stride, blocks, hk, d, n, og, out_stride);
        break;
      default:
        WeightedSum<4, kAccs>(pg, p_stride, blocks, hk, d, n, og, out_stride);
        break;
    }
  }
}

template <class T>
float ScoresFor(const float* q, const T* const* blocks, int64_t hk, int64_t d, int64_t n,
                float scale, float* e) {
  switch (d) {
    case 64:
      return Scores<1>(q, blocks, hk, d, n, scale, e);
    case 128:
      return Scores<2>(q, blocks, hk, d, n, scale, e);
    default:
      return Scores<0>(q, blocks, hk, d, n, scale, e);
  }
}

template <class T>
void WeightedSumFor(const float* p, int64_t p_stride, int heads, const T* const* blocks,
                    int64_t hk, int64_t d, int64_t n, bool vec_dot_order, float* out,
                    int64_t out_stride) {
  if (vec_dot_order) {
    WeightedSumHeads<4>(p, p_stride, heads, blocks, hk, d, n, out, out_stride);
  } else {
    WeightedSumHeads<1>(p, p_stride, heads, blocks, hk, d, n, out, out_stride);
  }
}

}  // namespace

float LaneScoresAvx512(const float* q, const float* const* blocks, int64_t hk, int64_t d,
                       int64_t n, float scale, float* e) {
  return ScoresFor(q, blocks, hk, d, n, scale, e);
}

float LaneScoresAvx512(const float* q, const uint16_t* const* blocks, int64_t hk, int64_t d,
                       int64_t n, float scale, float* e) {
  return ScoresFor(q, blocks, hk, d, n, scale, e);
}

void LaneWeightedSumAvx512(const float* p, int64_t p_stride, int heads,
                           const float* const* blocks, int64_t hk, int64_t d, int64_t n,
                           bool vec_dot_order, float* out, int64_t out_stride) {
  WeightedSumFor(p, p_stride, heads, blocks, hk, d, n, vec_dot_order, out, out_stride);
}

void LaneWeightedSumAvx512(const float* p, int64_t p_stride, int heads,
                           const uint16_t* const* blocks, int64_t hk, int64_t d, int64_t n,
                           bool vec_dot_order, float* out, int64_t out_stride) {
  WeightedSumFor(p, p_stride, heads, blocks, hk, d, n, vec_dot_order, out, out_stride);
}

}  // namespace anvil::cpu
