// The block-sum tile (MatMulNumerics::kBlockSum) for Q8_0, Q4_0 and Q4_1 weights with AVX-512
// VNNI (this file alone is compiled with -mavx512f/bw/vl/dq/vnni; called only when
// HasAvx512Vnni()). Bit-identical to reference::MatMul in that order, for every M:
//   acc = 0; per block b: acc = fma(float(isum_b), d_w * d_x, acc)
//                         Q4_1: acc = fma(m_w, s_x, acc)
// where isum_b is the block's exact integer dot product.
//
// Layout: 16 weight rows in the 16 lanes. Per block, a panel of 8 registers holds, in lane r,
// the r-th weight row's elements 4k..4k+3 (register k), transposed out of the rows once per
// (block, 16 rows) and kept in registers while every activation row passes: its dword k is
// broadcast straight from memory into vpdpbusd. So a block of one activation row against 16
// weight rows is 8 vpdpbusd (two chains of 4), an add, a convert, a multiply and one or two
// fused multiply-adds, where llama.cpp's order needs a convert and an fma per 4 products.
//
// Everything is in an anonymous namespace, including the helpers, so no inline function
// compiled here for AVX-512 can be picked by the linker for code that runs on other CPUs.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/dtype.h"

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512DQ__) || !defined(__AVX512VNNI__) || !defined(__AMX_INT8__)
#error "matmul_blocksum_avx512.cc must be compiled with -mavx512{f,bw,vl,dq,vnni} -mamx-{tile,int8}"
#endif

namespace anvil::cpu {
namespace {

constexpr int kLanes = 16;  // weight rows per panel

// One block of 16 weight rows. w[k] lane r: row r's elements 4k..4k+3 as bytes (0..15 for
// Q4_1; signed for Q8_0/Q4_0). corr (signed types): -128 * each lane's byte sum over w[0..7],
// the start value that turns vpdpbusd over activations stored as x + 128 into the exact sum of
// x * w. d, m: the rows' scales and (Q4_1) minimums.
struct Panel {
  __m512i w[8];
  __m512i corr;
  __m512 d, m;
};

struct alignas(64) Floats16 {
  float v[16];
};

// 4-byte heads of the 16 rows' blocks (fp16 d, and m for Q4_1): one gather at the rows'
// offsets from row 0 (`offsets`, lane r = r's row offset).
inline __attribute__((always_inline)) __m512i LoadHeads(const uint8_t* row0_block,
                                                        __m512i offsets) {
  return _mm512_i32gather_epi32(offsets, row0_block, 1);
}

// The 16 rows' 16-byte nibble arrays (qs at `qs[r]`) -> w[0..7]. Register z[q] carries rows
// q, 4 + q, 8 + q, 12 + q in its 128-bit quarters; a 4x4 dword transpose inside each quarter
// leaves dword j of row 4L + q in element 4L + q of t[j]. Its low nibbles are elements 4j..4j+3
// (w[j]), its high nibbles elements 16 + 4j.. (w[4 + j]).
inline __attribute__((always_inline)) void TransposeNibbles(const uint8_t* const* qs,
                                                            __m512i* w) {
  __m512i z[4];
  for (int q = 0; q < 4; ++q) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs[q])));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs[4 + q])), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs[8 + q])), 2);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs[12 + q])), 3);
    z[q] = v;
  }
  const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]);
  const __m512i t1 = _mm512_unpackhi_epi32(z[0], z[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]);
  const __m512i t3 = _mm512_unpackhi_epi32(z[2], z[3]);
  const __m512i d[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                        _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
  const __m512i low = _mm512_set1_epi8(0x0F);
  for (int j = 0; j < 4; ++j) {
    w[j] = _mm512_and_si512(d[j], low);
    w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(d[j], 4), low);
  }
}

// The 16 rows' 32 signed bytes (at `qs[r]`) -> w[0..7]. z[r] holds rows (r, r + 4) for r < 4 and
// (r + 4, r + 8) for r >= 4 in its 256-bit halves; an 8x8 dword transpose inside each half and
// one 128-bit shuffle per pair of outputs leave dword k of row r in element r of w[k].
inline __attribute__((always_inline)) void TransposeBytes(const uint8_t* const* qs,
                                                          __m512i* w) {
  __m512i z[8];
  for (int r = 0; r < 8; ++r) {
    const int lo = r < 4 ? r : r + 4;
    const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs[lo]));
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs[lo + 4]));
    z[r] = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
  }
  __m512i a[8], b[8];
  for (int p = 0; p < 4; ++p) {
    a[2 * p] = _mm512_unpacklo_epi32(z[2 * p], z[2 * p + 1]);
    a[2 * p + 1] = _mm512_unpackhi_epi32(z[2 * p], z[2 * p + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // rows of z[0..3], then of z[4..7]
    const __m512i* s = a + 4 * h;
    b[4 * h + 0] = _mm512_unpacklo_epi64(s[0], s[2]);  // dwords 0 | 4
    b[4 * h + 1] = _mm512_unpackhi_epi64(s[0], s[2]);  // 1 | 5
    b[4 * h + 2] = _mm512_unpacklo_epi64(s[1], s[3]);  // 2 | 6
    b[4 * h + 3] = _mm512_unpackhi_epi64(s[1], s[3]);  // 3 | 7
  }
  for (int j = 0; j < 4; ++j) {
    w[j] = _mm512_shuffle_i32x4(b[j], b[4 + j], _MM_SHUFFLE(2, 0, 2, 0));
    w[4 + j] = _mm512_shuffle_i32x4(b[j], b[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// fp16 in the low half of each dword -> float.
inline __attribute__((always_inline)) __m512 LowHalves(__m512i heads) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(heads));
}

// Block b of the 16 weight rows (w_rows[r] = row r's first byte).
template <DType kType>
inline __attribute__((always_inline)) void BuildPanel(const uint8_t* const* w_rows,
                                                      __m512i offsets, int64_t b, Panel* p) {
  const uint8_t* blk[kLanes];
  const uint8_t* qs[kLanes];
  constexpr int64_t kBytes = kType == DType::kQ8_0   ? sizeof(BlockQ8_0)
                             : kType == DType::kQ4_0 ? sizeof(BlockQ4_0)
                                                     : sizeof(BlockQ4_1);
  constexpr int64_t kQsOffset = kType == DType::kQ4_1 ? 4 : 2;
  for (int r = 0; r < kLanes; ++r) {
    blk[r] = w_rows[r] + b * kBytes;
    qs[r] = blk[r] + kQsOffset;
  }
  const __m512i heads = LoadHeads(blk[0], offsets);
  p->d = LowHalves(heads);
  if constexpr (kType == DType::kQ4_1) {
    p->m = LowHalves(_mm512_srli_epi32(heads, 16));
    TransposeNibbles(qs, p->w);
    return;
  }
  if constexpr (kType == DType::kQ8_0) {
    TransposeBytes(qs, p->w);
  } else {
    TransposeNibbles(qs, p->w);
    for (__m512i& v : p->w) v = _mm512_sub_epi8(v, _mm512_set1_epi8(8));
  }
  __m512i sums = _mm512_setzero_si512();
  for (const __m512i& v : p->w) sums = _mm512_dpbusd_epi32(sums, _mm512_set1_epi8(1), v);
  p->corr = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sums, 7));
}

// One activation row's block against the panel: the 16 exact integer block sums.
template <bool kSigned>
inline __attribute__((always_inline)) __m512i BlockSums(const Panel& p, const int32_t* xq) {
  __m512i i0, i1;
  if constexpr (kSigned) {  // x + 128 (unsigned) against the signed weights
    i0 = _mm512_dpbusd_epi32(p.corr, _mm512_set1_epi32(xq[0]), p.w[0]);
    i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi32(xq[1]), p.w[1]);
    i0 = _mm512_dpbusd_epi32(i0, _mm512_set1_epi32(xq[2]), p.w[2]);
    i1 = _mm512_dpbusd_epi32(i1, _mm512_set1_epi32(xq[3]), p.w[3]);
    i0 = _mm512_dpbusd_epi32(i0, _mm512_set1_epi32(xq[4]), p.w[4]);
    i1 = _mm512_dpbusd_epi32(i1, _mm512_set1_epi32(xq[5]), p.w[5]);
    i0 = _mm512_dpbusd_epi32(i0, _mm512_set1_epi32(xq[6]), p.w[6]);
    i1 = _mm512_dpbusd_epi32(i1, _mm512_set1_epi32(xq[7]), p.w[7]);
  } else {  // unsigned 4-bit weights against the signed activations
    i0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), p.w[0], _mm512_set1_epi32(xq[0]));
    i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), p.w[1], _mm512_set1_epi32(xq[1]));
    i0 = _mm512_dpbusd_epi32(i0, p.w[2], _mm512_set1_epi32(xq[2]));
    i1 = _mm512_dpbusd_epi32(i1, p.w[3], _mm512_set1_epi32(xq[3]));
    i0 = _mm512_dpbusd_epi32(i0, p.w[4], _mm512_set1_epi32(xq[4]));
    i1 = _mm512_dpbusd_epi32(i1, p.w[5], _mm512_set1_epi32(xq[5]));
    i0 = _mm512_dpbusd_epi32(i0, p.w[6], _mm512_set1_epi32(xq[6]));
    i1 = _mm512_dpbusd_epi32(i1, p.w[7], _mm512_set1_epi32(xq[7]));
  }
  return _mm512_add_epi32(i0, i1);
}

// AMX tiles: 0 = 16 x 16 int32 block sums (activation row x weight row), 1 = 16 activation
// rows x one block's 32 bytes, 2 = the panel's 8 four-byte groups of 16 weight rows (the
// "VNNI" layout AMX wants for B is exactly Panel::w). Loaded per call (UseAmxTiles).
const AmxTileConfig& BlockSumTiles() {
  static const AmxTileConfig config = [] {
    AmxTileConfig c;
    c.colsb[0] = 64, c.rows[0] = 16;
    c.colsb[1] = 32, c.rows[1] = 16;
    c.colsb[2] = 64, c.rows[2] = 8;
    return c;
  }();
  return config;
}

// out[j][r] = the block sums of activation rows row0..row0+15 (at `act`, stride k bytes) against
// the panel's rows; signed activations against unsigned (Q4_1) or signed weights.
template <bool kSigned>
inline __attribute__((always_inline)) void TileBlockSums(const uint8_t* act, int64_t k,
                                                         const void* panel_w, int32_t* out) {
  _tile_loadd(2, panel_w, 64);
  _tile_loadd(1, act, k);
  _tile_zero(0);
  if constexpr (kSigned) {
    _tile_dpbssd(0, 1, 2);
  } else {
    _tile_dpbsud(0, 1, 2);
  }
  _tile_stored(0, out, 64);
}

template <DType kType>
void BlockSumTile(const TileArgs& t) {
  constexpr bool kSigned = kType != DType::kQ4_1;
  const PreparedActs& x = *t.x;
  const int64_t nb = x.nb, k = x.k;
  const int64_t m_rows = t.m1 - t.m0;
  const uint8_t* act = kSigned ? x.qs_u8 : reinterpret_cast<const uint8_t*>(x.qs);
  const auto* act_signed = reinterpret_cast<const uint8_t*>(x.qs);
  thread_local std::vector<Floats16> acc;  // [m_rows] one accumulator per activation row
  if (acc.size() < static_cast<size_t>(m_rows)) acc.resize(m_rows);
  // Whole groups of 16 rows through AMX when there is one; the rest (and everything without
  // it) through vpdpbusd. Both give the exact integer sums, so the same bits.
  const int64_t tile_rows = HasAmxInt8() ? m_rows / 16 * 16 : 0;
  if (tile_rows > 0) UseAmxTiles(BlockSumTiles());
  alignas(64) __m512i panel_w[8];
  alignas(64) int32_t sums[16][16];
  // acc[j] (row t.m0 + j) += block b's sums (16 weight rows) times the scales.
  auto update = [&](int64_t j, int64_t b, const Panel& p, __m512i isum) {
    const int64_t row = t.m0 + j;
    const __m512 scale = _mm512_mul_ps(p.d, _mm512_set1_ps(x.d[row * nb + b]));
    __m512 a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), scale, _mm512_load_ps(acc[j].v));
    if constexpr (kType == DType::kQ4_1) {
      a = _mm512_fmadd_ps(p.m, _mm512_set1_ps(x.s[row * nb + b]), a);
    }
    _mm512_store_ps(acc[j].v, a);
  };
  for (int64_t n = t.n0; n < t.n1; n += kLanes) {
    const int rows = static_cast<int>(std::min<int64_t>(kLanes, t.n1 - n));
    const uint8_t* w_rows[kLanes];
    alignas(64) int32_t off[kLanes];
    for (int r = 0; r < kLanes; ++r) {
      w_rows[r] = t.w + (n + std::min(r, rows - 1)) * t.row_bytes;
      off[r] = static_cast<int32_t>(std::min(r, rows - 1) * t.row_bytes);
    }
    const __m512i offsets = _mm512_load_si512(off);
    // Prefetch into L2 a fixed distance ahead, a slice per block (the panel's 16 rows are one
    // contiguous range, read at the pace of its blocks), like the llama.cpp-order GEMV. With
    // weights from memory, 8 KB ahead measured best: at M = 1 as fast as that GEMV, at M = 16
    // 1.7-2x the llama.cpp-order tile (one whole panel 2 ahead at once: 0.85x and 1.5x).
    constexpr int64_t kPrefetchBytes = 8192;
    const int64_t panel_start = n * t.row_bytes, w_bytes = t.n_total * t.row_bytes;
    const int64_t pf_step = kLanes * (t.row_bytes / nb);
    for (int64_t j = 0; j < m_rows; ++j) _mm512_store_ps(acc[j].v, _mm512_setzero_ps());
    for (int64_t b = 0; b < nb; ++b) {
      for (int64_t off = 0; off < pf_step; off += 64) {
        const int64_t pf = panel_start + kPrefetchBytes + b * pf_step + off;
        if (pf < w_bytes) _mm_prefetch(reinterpret_cast<const char*>(t.w + pf), _MM_HINT_T1);
      }
      Panel p;
      BuildPanel<kType>(w_rows, offsets, b, &p);
      if (tile_rows > 0) {
        for (int i = 0; i < 8; ++i) _mm512_store_si512(&panel_w[i], p.w[i]);
        for (int64_t g = 0; g < tile_rows; g += 16) {
          TileBlockSums<kSigned>(act_signed + (t.m0 + g) * k + b * kQK, k, panel_w, &sums[0][0]);
          for (int j = 0; j < 16; ++j) update(g + j, b, p, _mm512_load_si512(sums[j]));
        }
      }
      for (int64_t j = tile_rows; j < m_rows; ++j) {
        const auto* xq = reinterpret_cast<const int32_t*>(act + (t.m0 + j) * k + b * kQK);
        update(j, b, p, BlockSums<kSigned>(p, xq));
      }
    }
    const __mmask16 keep = static_cast<__mmask16>((1u << rows) - 1);
    for (int64_t j = 0; j < m_rows; ++j) {
      _mm512_mask_storeu_ps(t.y + (t.m0 + j) * t.ldy + n, keep, _mm512_load_ps(acc[j].v));
    }
  }
}

}  // namespace

void MatMulBlockSumAvx512(DType type, const TileArgs& t) {
  switch (type) {
    case DType::kQ8_0:
      BlockSumTile<DType::kQ8_0>(t);
      return;
    case DType::kQ4_0:
      BlockSumTile<DType::kQ4_0>(t);
      return;
    case DType::kQ4_1:
      BlockSumTile<DType::kQ4_1>(t);
      return;
    default:
      return;
  }
}

}  // namespace anvil::cpu
