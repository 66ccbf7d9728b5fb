// The prefill tile for Q8_0, Q4_0 and Q4_1 weights with AVX-512 VNNI (this file alone is
// compiled with -mavx512f/bw/vl/dq/vnni; called only when HasAvx512Vnni()). Bit-identical to
// the reference, like the AVX2 tile (matmul_quant_gemm_impl.h): every (weight row, activation
// row) pair keeps its own 8 float lanes, lane k += (d_w * d_x) * (exact integer sum of the
// block's elements 4k..4k+3), fused, reduced by the same horizontal sum; Q4_1 adds m_w * s_x
// in a separate running sum.
//
// What is new is the packing: one 512-bit register carries two pairs (weight row i against
// activation rows j and j+1), their lanes interleaved (even lanes: row j, odd lanes: row j+1),
// so each vpdpbusd / cvt / fma does the work of two 256-bit ones with each pair's operations
// unchanged. The activation rows are interleaved that way once per call
// (InterleaveActGroupsAvx512, 4 rows a group); a panel of 4 weight rows is unpacked with each
// 4-byte group doubled to meet them. The two scale products of a register, (d_w d_xj,
// d_w d_xj+1), are one 64-bit broadcast from a per-(panel, group) table.
//
// Everything is in an anonymous namespace, including the helpers, so no inline function
// compiled here for AVX-512 can be picked by the linker for code that runs on other CPUs.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/dtype.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512DQ__) || !defined(__AVX512VNNI__)
#error "matmul_quant_gemm_avx512.cc must be compiled with -mavx512{f,bw,vl,dq,vnni}"
#endif

namespace anvil::cpu {
namespace {

constexpr int kPanelRows = 4;  // weight rows per panel
constexpr int kGroupRows = kActGroupRows;
static_assert(kGroupRows == 4, "the kernel's register blocking assumes groups of 4 rows");

// One block of a 4-row panel. w[i]: row i's 32 weights as bytes (signed for Q8_0/Q4_0, 0..15
// for Q4_1), each 4-byte group twice: lanes 2k and 2k+1 both hold elements 4k..4k+3.
// corr[i] (signed types): -128 * those lane sums, the start value that turns vpdpbusd over the
// activations stored as x + 128 back into the exact sum of x * w. d, m: lane 4i + j = row i's
// scale / minimum.
struct PanelBlock {
  __m512i w[kPanelRows];
  __m512i corr[kPanelRows];
  __m512 d, m;
};
// Wrapper so that std::vector keeps the vector type's alignment.
struct Floats16 {
  __m512 v;
};

// A zero made by a zeroing idiom in place (free at rename). Left to itself GCC keeps one zero
// register and copies it before each vpdpbusd, a real uop on the vector ports.
__m512i FreshZero() {
  __m512i z;
  __asm__ volatile("vpxord %0, %0, %0" : "=v"(z));
  return z;
}

// 16 bytes of nibbles -> 32 bytes in element order (low nibbles 0..15, high nibbles 16..31).
__m256i Unpack4(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both =
      _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// 32 bytes -> 64 with each 4-byte group doubled.
__m512i DoubleGroups(__m256i v) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return _mm512_permutexvar_epi32(idx, _mm512_castsi256_si512(v));
}

template <DType kType>
void BuildPanel(const uint8_t* const* w_rows, int64_t nb, PanelBlock* panel) {
  constexpr bool kSigned = kType != DType::kQ4_1;
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t b = 0; b < nb; ++b) {
    uint32_t head[kPanelRows];  // each row's fp16 d (and m for Q4_1) at the block's start
    for (int r = 0; r < kPanelRows; ++r) {
      __m256i w;
      if constexpr (kType == DType::kQ8_0) {
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(w_rows[r]) + b;
        w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
        head[r] = blk->d;
      } else if constexpr (kType == DType::kQ4_0) {
        const auto* blk = reinterpret_cast<const BlockQ4_0*>(w_rows[r]) + b;
        w = _mm256_sub_epi8(Unpack4(blk->qs), _mm256_set1_epi8(8));
        head[r] = blk->d;
      } else {
        const auto* blk = reinterpret_cast<const BlockQ4_1*>(w_rows[r]) + b;
        w = Unpack4(blk->qs);
        head[r] = blk->d | uint32_t{blk->m} << 16;
      }
      panel[b].w[r] = DoubleGroups(w);
      if constexpr (kSigned) {
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1),
                                                 panel[b].w[r]);
        panel[b].corr[r] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 7));
      }
    }
    // The 4 rows' scales converted together (exactly, like one _cvtsh_ss each).
    if constexpr (kType == DType::kQ4_1) {
      const __m256 dm = _mm256_cvtph_ps(_mm_setr_epi32(static_cast<int>(head[0]),
          static_cast<int>(head[1]), static_cast<int>(head[2]), static_cast<int>(head[3])));
      const __m512i even = _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6);
      const __m512 wide = _mm512_castps256_ps512(dm);  // [d0 m0 d1 m1 d2 m2 d3 m3]
      panel[b].d = _mm512_permutexvar_ps(even, wide);
      panel[b].m = _mm512_permutexvar_ps(_mm512_add_epi32(even, _mm512_set1_epi32(1)), wide);
    } else {
      const __m128 d = _mm_cvtph_ps(_mm_setr_epi16(
          static_cast<int16_t>(head[0]), static_cast<int16_t>(head[1]),
          static_cast<int16_t>(head[2]), static_cast<int16_t>(head[3]), 0, 0, 0, 0));
      panel[b].d = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(d));
      panel[b].m = _mm512_setzero_ps();
    }
  }
}

// The block step of one register: pair (weight row i, activation rows 2p, 2p+1 of a group).
// lanes: the exact integer lane sums; the 64-bit broadcast gives (d_wi d_x2p, d_wi d_x2p+1).
template <bool kSigned>
inline __attribute__((always_inline)) __m512 Step(const __m512i& corr, __m512i w, __m512i x,
                                                  const float* pair_scale, __m512 acc) {
  const __m512i lanes =
      kSigned ? _mm512_dpbusd_epi32(corr, x, w) : _mm512_dpbusd_epi32(FreshZero(), w, x);
  double pair;
  std::memcpy(&pair, pair_scale, sizeof(pair));
  return _mm512_fmadd_ps(_mm512_castpd_ps(_mm512_set1_pd(pair)), _mm512_cvtepi32_ps(lanes), acc);
}

// The two pairs' sums out of one register, each in llama.cpp's hsum_float_8 order
// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7)), both at once: the pairs' lanes interleave,
// so the same halvings that reduce one 8-lane vector reduce both. out[0]: even lanes' pair.
void StorePairSums(__m512 acc, float* out) {
  const __m256 t = _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1));
  const __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  _mm_storel_pi(reinterpret_cast<__m64*>(out), _mm_add_ps(u, _mm_movehl_ps(u, u)));
}

// For each of kGroups (1 or 2) activation groups G: out[G][4i + j] = dot(panel row i, activation
// row j) without Q4_1's m * s terms. xg[G]: the group's blocks, [nb][2][64] bytes; scale[G]:
// [nb][16] pair products, lane 4i + j = d_wi * d_xj. Two groups at a time load each weight
// register (and its correction) half as often per multiply. The accumulators are named
// variables: with arrays GCC 12 spilled them and copied operands around (35% slower).
template <DType kType, int kGroups>
void GemmKernel(const PanelBlock* panel, const uint8_t* const* xg, const float* const* scale,
                int64_t nb, float (*out)[16]) {
  constexpr bool kSigned = kType != DType::kQ4_1;
  const __m512 zero = _mm512_setzero_ps();
  __m512 a00 = zero, a01 = zero, a02 = zero, a03 = zero, a10 = zero, a11 = zero, a12 = zero,
         a13 = zero, a20 = zero, a21 = zero, a22 = zero, a23 = zero, a30 = zero, a31 = zero,
         a32 = zero, a33 = zero;
  const uint8_t* x0p = xg[0];
  const uint8_t* x1p = xg[kGroups - 1];
  for (int64_t b = 0; b < nb; ++b) {
    const PanelBlock& pb = panel[b];
    const __m512i x0 = _mm512_load_si512(x0p + b * 128);
    const __m512i x1 = _mm512_load_si512(x0p + b * 128 + 64);
    const float* s0 = scale[0] + b * 16;
    const float* s1 = scale[kGroups - 1] + b * 16;
#define ANVIL_ROW_STEP(i)                                                          \
  {                                                                                \
    const __m512i w = pb.w[i];                                                     \
    a##i##0 = Step<kSigned>(pb.corr[i], w, x0, s0 + 4 * i, a##i##0);               \
    a##i##1 = Step<kSigned>(pb.corr[i], w, x1, s0 + 4 * i + 2, a##i##1);           \
    if constexpr (kGroups == 2) {                                                  \
      a##i##2 = Step<kSigned>(pb.corr[i], w, x2, s1 + 4 * i, a##i##2);             \
      a##i##3 = Step<kSigned>(pb.corr[i], w, x3, s1 + 4 * i + 2, a##i##3);         \
    }                                                                              \
  }
    __m512i x2 = x0, x3 = x1;
    if constexpr (kGroups == 2) {
      x2 = _mm512_load_si512(x1p + b * 128);
      x3 = _mm512_load_si512(x1p + b * 128 + 64);
    }
    ANVIL_ROW_STEP(0)
    ANVIL_ROW_STEP(1)
    ANVIL_ROW_STEP(2)
    ANVIL_ROW_STEP(3)
#undef ANVIL_ROW_STEP
  }
  const __m512 acc[kPanelRows][4] = {
      {a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  for (int i = 0; i < kPanelRows; ++i) {
    for (int q = 0; q < 2 * kGroups; ++q) {
      StorePairSums(acc[i][q], out[q / 2] + 4 * i + 2 * (q % 2));
    }
  }
}

template <DType kType>
void TileGemm(const TileArgs& t) {
  const PreparedActs& x = *t.x;
  const int64_t nb = x.nb;
  const int64_t g0 = t.m0 / kGroupRows;  // units start on a group boundary
  const int64_t groups = (t.m1 - t.m0 + kGroupRows - 1) / kGroupRows;
  thread_local std::vector<PanelBlock> panel;
  thread_local std::vector<Floats16> scale;  // [2][nb]
  thread_local std::vector<Floats16> summs;  // [groups] Q4_1's m_w * s_x sums per pair
  if (panel.size() < static_cast<size_t>(nb)) panel.resize(nb);
  if (scale.size() < static_cast<size_t>(2 * nb)) scale.resize(2 * nb);
  if (summs.size() < static_cast<size_t>(groups)) summs.resize(groups);
  for (int64_t n = t.n0; n < t.n1; n += kPanelRows) {
    const int64_t rows = std::min<int64_t>(kPanelRows, t.n1 - n);
    const uint8_t* w_rows[kPanelRows];
    for (int i = 0; i < kPanelRows; ++i) {
      w_rows[i] = t.w + std::min<int64_t>(n + i, t.n1 - 1) * t.row_bytes;
    }
    // With few activation rows (batched decode) a panel is used briefly and its weights come
    // from memory: fetch the panel two ahead into L2 meanwhile (rows are contiguous). Into L1
    // (T0) the prefetches waited for fill buffers and stalled the tile (perf put 12% of its
    // samples there); T1 gave the 16-stream engine bench +1-7% in 5 of 5 alternating pairs.
    if (const int64_t ahead = n + 2 * kPanelRows; ahead < t.n_total) {
      const int64_t ahead_rows = std::min<int64_t>(kPanelRows, t.n_total - ahead);
      const uint8_t* p = t.w + ahead * t.row_bytes;
      for (int64_t off = 0; off < ahead_rows * t.row_bytes; off += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(p + off), _MM_HINT_T1);
      }
    }
    BuildPanel<kType>(w_rows, nb, panel.data());
    if constexpr (kType == DType::kQ4_1) {
      // Each pair's running sum in block order, up to 4 groups' chains at once in registers.
      for (int64_t g = 0; g < groups; g += 4) {
        const int count = static_cast<int>(std::min<int64_t>(4, groups - g));
        const float* gs = x.group_s + (g0 + g) * nb * 16;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        for (int64_t b = 0; b < nb; ++b) {
          const __m512 pm = panel[b].m;
#pragma GCC unroll 4
          for (int c = 0; c < 4; ++c) {
            if (c < count) {
              acc[c] = _mm512_add_ps(acc[c],
                                     _mm512_mul_ps(pm, _mm512_load_ps(gs + (c * nb + b) * 16)));
            }
          }
        }
        for (int c = 0; c < count; ++c) summs[g + c].v = acc[c];
      }
    }
    for (int64_t g = 0; g < groups; g += 2) {
      const int count = groups - g >= 2 ? 2 : 1;
      const uint8_t* xg[2];
      const float* sc[2];
      alignas(64) float out[2][16];
      for (int c = 0; c < count; ++c) {
        const int64_t gi = g0 + g + c;
        const float* gd = x.group_d + gi * nb * 16;
        Floats16* sct = scale.data() + c * nb;
        for (int64_t b = 0; b < nb; ++b) {  // the pair scale products
          sct[b].v = _mm512_mul_ps(panel[b].d, _mm512_load_ps(gd + b * 16));
        }
        xg[c] = x.group_qs + gi * nb * 128;
        sc[c] = reinterpret_cast<const float*>(sct);
      }
      if (count == 2) {
        GemmKernel<kType, 2>(panel.data(), xg, sc, nb, out);
      } else {
        GemmKernel<kType, 1>(panel.data(), xg, sc, nb, out);
      }
      for (int c = 0; c < count; ++c) {
        const int64_t m0 = t.m0 + kGroupRows * (g + c);
        const int rx = static_cast<int>(std::min<int64_t>(kGroupRows, t.m1 - m0));
        const float* m = reinterpret_cast<const float*>(&summs[g + c]);
        for (int64_t i = 0; i < rows; ++i) {
          for (int j = 0; j < rx; ++j) {
            float v = out[c][4 * i + j];
            if constexpr (kType == DType::kQ4_1) v += m[4 * i + j];
            t.y[(m0 + j) * t.ldy + n + i] = v;
          }
        }
      }
    }
  }
}

}  // namespace

void MatMulGemmQuantAvx512(DType type, const TileArgs& t) {
  switch (type) {
    case DType::kQ8_0:
      TileGemm<DType::kQ8_0>(t);
      return;
    case DType::kQ4_0:
      TileGemm<DType::kQ4_0>(t);
      return;
    case DType::kQ4_1:
      TileGemm<DType::kQ4_1>(t);
      return;
    default:
      return;
  }
}

void InterleaveActGroupsAvx512(DType type, const PreparedActs& x, int64_t m, int64_t g0,
                               int64_t g1, uint8_t* group_qs, float* group_d, float* group_s) {
  const int64_t nb = x.nb;
  const bool flip = type != DType::kQ4_1;  // signed weights meet x + 128 (see PanelBlock)
  const __m512i mix = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
  for (int64_t g = g0; g < g1; ++g) {
    int64_t r[kGroupRows];  // a short last group repeats its last row (results dropped)
    for (int j = 0; j < kGroupRows; ++j) r[j] = std::min(g * kGroupRows + j, m - 1);
    for (int64_t b = 0; b < nb; ++b) {
      __m256i q[kGroupRows];
      alignas(16) float d[kGroupRows], s[kGroupRows];
      for (int j = 0; j < kGroupRows; ++j) {
        q[j] = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs + r[j] * x.k + b * kQK));
        if (flip) q[j] = _mm256_xor_si256(q[j], _mm256_set1_epi8(-128));
        d[j] = x.d[r[j] * nb + b];
        s[j] = x.s != nullptr ? x.s[r[j] * nb + b] : 0.0f;
      }
      uint8_t* out = group_qs + (g * nb + b) * 128;
      for (int p = 0; p < 2; ++p) {
        const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(q[2 * p]), q[2 * p + 1], 1);
        _mm512_store_si512(out + 64 * p, _mm512_permutexvar_epi32(mix, both));
      }
      _mm512_store_ps(group_d + (g * nb + b) * 16, _mm512_broadcast_f32x4(_mm_load_ps(d)));
      if (group_s != nullptr) {
        _mm512_store_ps(group_s + (g * nb + b) * 16, _mm512_broadcast_f32x4(_mm_load_ps(s)));
      }
    }
  }
}

}  // namespace anvil::cpu
