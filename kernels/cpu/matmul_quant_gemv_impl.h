// Internal to the CPU matmul: the decode tile (one activation row) for Q8_0, Q4_0 and Q4_1
// weights, included by matmul_quant_gemv_avx2.cc (kVnni = false) and matmul_quant_gemv_vnni.cc
// (kVnni = true, -mavxvnni, used when the CPU has AVX-VNNI); both bit-identical to the reference.
// Numerics: the reference (llama.cpp's x86 order, kernels/reference/matmul.cc): per weight row,
// 8 float lanes, lane i holding the exact integer sum of elements 4i..4i+3 of each block, accumulated as
// fma(d_w * d_x, lane sum, lane) block after block; HorizontalSum's reduction order; Q4_1 adds
// its m_w * s_x terms in a separate running sum. The 4-bit blocks are unpacked to element order
// (low nibbles = elements 0..15, high nibbles = 16..31). Rows are only a few cache lines long,
// too short for the hardware prefetcher, so each block step prefetches the rows that come next.
#ifndef ANVIL_KERNELS_CPU_MATMUL_QUANT_GEMV_IMPL_H_
#define ANVIL_KERNELS_CPU_MATMUL_QUANT_GEMV_IMPL_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quant_blocks_avx2.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/dtype.h"

namespace anvil::cpu {
namespace {


// Weight rows per kernel call (few rows keep the demand stream close to sequential, which
// measured best for weights coming from memory) and how far ahead to prefetch, into L2: with
// weights from memory (2 threads, 1 GiB of copies) 4 KB ahead into L2 streamed Q8_0 at 18-20 GB/s
// and Q4_1 at 16.7-17.7, against 14.7 for both with 1 KB ahead into L1.
constexpr int kRows = 4;
constexpr int64_t kPrefetchBytes = 4096;

struct Q8_0Kind {
  using Block = BlockQ8_0;
};
struct Q4_0Kind {
  using Block = BlockQ4_0;
};
struct Q4_1Kind {
  using Block = BlockQ4_1;
};

// Integer lane sums of one block of a weight row with the activation block x. With AVX-VNNI the
// 4-bit types use vpdpbusd on the unsigned nibbles directly: exact int32 lane sums, for Q4_0
// started at x_corr = -8 * (lane sums of x) so that they equal sum((q - 8) * x), the same lanes
// as the AVX2 sequence.
template <class Kind, bool kVnni>
inline __m256i BlockLanes(const typename Kind::Block* blk, __m256i x,
                          [[maybe_unused]] __m256i x_corr) {
  if constexpr (std::is_same_v<Kind, Q8_0Kind>) {
    return SignedDot(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs)), x);
  } else if constexpr (std::is_same_v<Kind, Q4_0Kind>) {
#ifdef __AVXVNNI__
    if constexpr (kVnni) return _mm256_dpbusd_avx_epi32(x_corr, Unpack4(blk->qs), x);
#endif
    return SignedDot(_mm256_sub_epi8(Unpack4(blk->qs), _mm256_set1_epi8(8)), x);
  } else {
#ifdef __AVXVNNI__
    if constexpr (kVnni) return _mm256_dpbusd_avx_epi32(x_corr, Unpack4(blk->qs), x);
#endif
    return UnsignedDot(Unpack4(blk->qs), x);
  }
}

// out[r] = dot(weight row r, x) for kRows rows.
template <class Kind, bool kVnni>
void GemvKernel(const uint8_t* const* w_rows, const int8_t* xq, const float* xd, const float* xs,
                int64_t nb, const uint8_t* pf, int64_t pf_step, float* out) {
  using Block = typename Kind::Block;
  constexpr bool kMin = std::is_same_v<Kind, Q4_1Kind>;
  __m256 acc[kRows];
  __m128 summs[kRows];  // lane 1: the running sum of m_w * s_x (Q4_1)
  for (int r = 0; r < kRows; ++r) {
    acc[r] = _mm256_setzero_ps();
    summs[r] = _mm_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    if (pf != nullptr) {
      for (int64_t off = 0; off < pf_step; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(pf + b * pf_step + off), _MM_HINT_T1);
      }
    }
    const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(xq + b * kQK));
    __m256i x_corr = _mm256_setzero_si256();
#ifdef __AVXVNNI__
    if constexpr (kVnni && std::is_same_v<Kind, Q4_0Kind>) {
      x_corr = _mm256_sub_epi32(
          x_corr, _mm256_slli_epi32(
                      _mm256_dpbusd_avx_epi32(x_corr, _mm256_set1_epi8(1), x), 3));
    }
#endif
    // [d_x, s_x, d_x, s_x]: one multiply gives d_w * d_x and m_w * s_x.
    const __m128 dxs = kMin ? _mm_unpacklo_ps(_mm_broadcast_ss(xd + b), _mm_broadcast_ss(xs + b))
                            : _mm_broadcast_ss(xd + b);
    for (int r = 0; r < kRows; ++r) {
      const auto* blk = reinterpret_cast<const Block*>(w_rows[r]) + b;
      int32_t h = 0;  // d (and m for Q4_1) as fp16
      std::memcpy(&h, blk, kMin ? 4 : 2);
      const __m128 prod = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(h)), dxs);
      const __m256 lanes = _mm256_cvtepi32_ps(BlockLanes<Kind, kVnni>(blk, x, x_corr));
      acc[r] = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), lanes, acc[r]);
      if constexpr (kMin) summs[r] = _mm_add_ps(summs[r], prod);
    }
  }
  for (int r = 0; r < kRows; ++r) {
    out[r] = HorizontalSum(acc[r]);
    if constexpr (kMin) out[r] += _mm_cvtss_f32(_mm_shuffle_ps(summs[r], summs[r], 1));
  }
}

template <class Kind, bool kVnni>
void TileGemv(const TileArgs& t) {
  const PreparedActs& x = *t.x;
  for (int64_t n = t.n0; n < t.n1; n += kRows) {
    const int64_t rows = std::min<int64_t>(kRows, t.n1 - n);
    // Rows past n1 repeat the last real row; their results are discarded.
    const uint8_t* w_rows[kRows];
    for (int i = 0; i < kRows; ++i) {
      w_rows[i] = t.w + std::min<int64_t>(n + i, t.n1 - 1) * t.row_bytes;
    }
    const uint8_t* pf = nullptr;
    int64_t pf_step = 0;
    const int64_t pf_row =
        std::min(n + kRows + (kPrefetchBytes + t.row_bytes - 1) / t.row_bytes, t.n_total);
    const int64_t pf_rows = std::min<int64_t>(kRows, t.n_total - pf_row);
    if (pf_rows > 0 && x.nb > 0) {
      pf = t.w + pf_row * t.row_bytes;
      pf_step = (pf_rows * t.row_bytes + x.nb - 1) / x.nb;
    }
    float out[kRows];
    GemvKernel<Kind, kVnni>(w_rows, x.qs + t.m0 * x.k, x.d + t.m0 * x.nb, x.s + t.m0 * x.nb, x.nb, pf,
                     pf_step, out);
    for (int64_t i = 0; i < rows; ++i) t.y[t.m0 * t.ldy + n + i] = out[i];
  }
}

template <bool kVnni>
void RunGemvTile(DType type, const TileArgs& t) {
  switch (type) {
    case DType::kQ8_0:
      TileGemv<Q8_0Kind, kVnni>(t);
      return;
    case DType::kQ4_0:
      TileGemv<Q4_0Kind, kVnni>(t);
      return;
    case DType::kQ4_1:
      TileGemv<Q4_1Kind, kVnni>(t);
      return;
    default:
      return;
  }
}

}  // namespace
}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_MATMUL_QUANT_GEMV_IMPL_H_
