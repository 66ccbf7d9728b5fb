// Internal to the CPU matmul: the prefill tile for Q8_0, Q4_0 and Q4_1 weights, included by
// matmul_quant_gemm_avx2.cc (kVnni = false: AVX2 only) and matmul_quant_gemm_vnni.cc (kVnni =
// true, compiled with -mavxvnni, used when the CPU has AVX-VNNI). Both are bit-identical to the
// reference (llama.cpp's x86 order): every (weight row, activation row) pair keeps its own 8
// float lanes, lane i += d_w * d_x times the exact integer sum of elements 4i..4i+3 of each
// block (fused), reduced by HorizontalSum; Q4_1 adds the m_w * s_x terms in a separate running
// sum. Speed comes from reuse: two weight rows are unpacked once into a panel (bytes in element
// order, float scales) and met with activation rows four at a time (their blocks interleaved so
// one pointer reaches all four), the 8 pair scale products of a block formed by one vector
// multiply ahead of the integer work. Everything here has internal linkage, so each includer
// gets its own copy compiled for its own instruction set.
#ifndef ANVIL_KERNELS_CPU_MATMUL_QUANT_GEMM_IMPL_H_
#define ANVIL_KERNELS_CPU_MATMUL_QUANT_GEMM_IMPL_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/quant_blocks_avx2.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/dtype.h"

namespace anvil::cpu {
namespace {


constexpr int kPanelRows = 2;  // weight rows per kernel call
constexpr int kActRows = 4;    // activation rows per kernel call

// One block of a 2-row panel. w: the rows' 32 weights as bytes in element order (signed for
// Q8_0/Q4_0, 0..15 for Q4_1). d = [d_0 x4 | d_1 x4], m = [m_0 x4 | m_1 x4] (Q4_1).
// With AVX-VNNI, signed weights meet activations shifted to unsigned (x + 128, stored by
// TileGemm as x ^ 0x80): vpdpbusd sums (x + 128) * w exactly in int32, and starting each lane
// at corr = -128 * sum(w) over the lane's 4 elements leaves exactly sum(x * w), the same lane
// sums as the AVX2 sign/maddubs/madd sequence, so results stay bit-identical.
struct PanelBlock {
  __m256i w[kPanelRows];
  __m256i corr[kPanelRows];  // AVX-VNNI, signed types: -128 * (sum of w over each lane's 4)
  __m256 d, m;
};

// Scales of one block of 4 activation rows: d = [d_x0 .. d_x3 | d_x0 .. d_x3], s likewise, so
// that panel.d * act.d holds the 8 pair products d_w * d_x, lane 4i + j for (row i, act row j).
struct ActBlock {
  __m256 d, s;
};

// Wrappers so that std::vector keeps the vector types' alignment attribute.
struct Bytes32 {
  __m256i v;
};
struct Floats8 {
  __m256 v;
};

template <DType kType, bool kVnni>
void BuildPanel(const uint8_t* const* w_rows, int64_t nb, PanelBlock* panel) {
  for (int64_t b = 0; b < nb; ++b) {
    float d[kPanelRows], m[kPanelRows] = {};
    for (int r = 0; r < kPanelRows; ++r) {
      if constexpr (kType == DType::kQ8_0) {
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(w_rows[r]) + b;
        panel[b].w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
        d[r] = _cvtsh_ss(blk->d);
      } else if constexpr (kType == DType::kQ4_0) {
        const auto* blk = reinterpret_cast<const BlockQ4_0*>(w_rows[r]) + b;
        panel[b].w[r] = _mm256_sub_epi8(Unpack4(blk->qs), _mm256_set1_epi8(8));
        d[r] = _cvtsh_ss(blk->d);
      } else {
        const auto* blk = reinterpret_cast<const BlockQ4_1*>(w_rows[r]) + b;
        panel[b].w[r] = Unpack4(blk->qs);
        d[r] = _cvtsh_ss(blk->d);
        m[r] = _cvtsh_ss(blk->m);
      }
    }
#ifdef __AVXVNNI__
    if constexpr (kVnni && kType != DType::kQ4_1) {
      for (int r = 0; r < kPanelRows; ++r) {
        const __m256i sums =
            _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), panel[b].w[r]);
        panel[b].corr[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, 7));
      }
    }
#endif
    panel[b].d = _mm256_setr_m128(_mm_set1_ps(d[0]), _mm_set1_ps(d[1]));
    panel[b].m = _mm256_setr_m128(_mm_set1_ps(m[0]), _mm_set1_ps(m[1]));
  }
}

// out[4i + j] = dot(panel row i, activation row j) without Q4_1's m * s terms. xg: the group's
// activation blocks interleaved, [nb][4][32] bytes; scale: [nb][8] pair products d_w * d_x.
template <DType kType, bool kVnni>
void GemmKernel(const PanelBlock* panel, const int8_t* xg, const float* scale, int64_t nb,
                float* out) {
  constexpr bool kSigned = kType != DType::kQ4_1;
  __m256 acc[kPanelRows][kActRows];
  for (int i = 0; i < kPanelRows; ++i) {
    for (int j = 0; j < kActRows; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; ++b) {
    const PanelBlock& pb = panel[b];
    const int8_t* xb = xg + b * kActRows * kQK;
    const float* sb = scale + b * 8;
    __m256i w_abs[kPanelRows];
    if constexpr (kSigned && !kVnni) {
      for (int i = 0; i < kPanelRows; ++i) w_abs[i] = _mm256_sign_epi8(pb.w[i], pb.w[i]);
    }
    for (int j = 0; j < kActRows; ++j) {
      const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(xb + j * kQK));
      for (int i = 0; i < kPanelRows; ++i) {
        __m256i lanes;
#ifdef __AVXVNNI__
        if constexpr (kVnni) {
          lanes = kSigned ? _mm256_dpbusd_avx_epi32(pb.corr[i], x, pb.w[i])
                          : _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), pb.w[i], x);
        } else
#endif
        {
          lanes = kSigned ? SignedDot(pb.w[i], w_abs[i], x) : UnsignedDot(pb.w[i], x);
        }
        acc[i][j] = _mm256_fmadd_ps(_mm256_broadcast_ss(sb + 4 * i + j), _mm256_cvtepi32_ps(lanes),
                                    acc[i][j]);
      }
    }
  }
  for (int i = 0; i < kPanelRows; ++i) {
    for (int j = 0; j < kActRows; ++j) out[4 * i + j] = HorizontalSum(acc[i][j]);
  }
}

template <DType kType, bool kVnni>
void TileGemm(const TileArgs& t) {
  const PreparedActs& x = *t.x;
  const int64_t nb = x.nb;
  const int64_t groups = (t.m1 - t.m0 + kActRows - 1) / kActRows;
  // Per worker thread, reused across calls: the panel, the unit's activation groups (scales and
  // interleaved blocks) and one (panel, group) table of scale products.
  thread_local std::vector<PanelBlock> panel;
  thread_local std::vector<ActBlock> act;
  thread_local std::vector<Bytes32> xg;  // [groups][nb][4] blocks of 32 bytes
  thread_local std::vector<Floats8> scale;
  if (panel.size() < static_cast<size_t>(nb)) panel.resize(nb);
  if (scale.size() < static_cast<size_t>(nb)) scale.resize(nb);
  if (act.size() < static_cast<size_t>(groups * nb)) act.resize(groups * nb);
  if (xg.size() < static_cast<size_t>(groups * nb * kActRows)) xg.resize(groups * nb * kActRows);
  // Activation rows in groups of 4; a short last group repeats its last row (results dropped).
  auto row = [&](int64_t g, int j) { return std::min(t.m0 + kActRows * g + j, t.m1 - 1); };
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t b = 0; b < nb; ++b) {
      float d[4], s[4];
      for (int j = 0; j < kActRows; ++j) {
        const int64_t r = row(g, j);
        d[j] = x.d[r * nb + b];
        s[j] = x.s != nullptr ? x.s[r * nb + b] : 0.0f;
        __m256i q = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.qs + r * x.k + b * kQK));
        if constexpr (kVnni && kType != DType::kQ4_1) q = _mm256_xor_si256(q, _mm256_set1_epi8(-128));
        xg[(g * nb + b) * kActRows + j].v = q;
      }
      // Built in registers: a 16-byte reload of the four scalar stores above would stall on
      // store forwarding (perf showed it as a quarter of this function's time).
      const __m128 d4 = _mm_setr_ps(d[0], d[1], d[2], d[3]);
      const __m128 s4 = _mm_setr_ps(s[0], s[1], s[2], s[3]);
      act[g * nb + b].d = _mm256_set_m128(d4, d4);
      act[g * nb + b].s = _mm256_set_m128(s4, s4);
    }
  }
  for (int64_t n = t.n0; n < t.n1; n += kPanelRows) {
    const int64_t rows = std::min<int64_t>(kPanelRows, t.n1 - n);
    const uint8_t* w_rows[kPanelRows];
    for (int i = 0; i < kPanelRows; ++i) {
      w_rows[i] = t.w + std::min<int64_t>(n + i, t.n1 - 1) * t.row_bytes;
    }
    BuildPanel<kType, kVnni>(w_rows, nb, panel.data());
    for (int64_t g = 0; g < groups; ++g) {
      const ActBlock* ag = act.data() + g * nb;
      // The pair scale products, and Q4_1's running m_w * s_x per pair (block order).
      __m256 summs = _mm256_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        scale[b].v = _mm256_mul_ps(panel[b].d, ag[b].d);
        if constexpr (kType == DType::kQ4_1) {
          summs = _mm256_add_ps(summs, _mm256_mul_ps(panel[b].m, ag[b].s));
        }
      }
      alignas(32) float out[kPanelRows * kActRows], m[8];
      GemmKernel<kType, kVnni>(panel.data(),
                        reinterpret_cast<const int8_t*>(xg.data() + g * nb * kActRows),
                        reinterpret_cast<const float*>(scale.data()), nb, out);
      _mm256_store_ps(m, summs);
      const int64_t m0 = t.m0 + kActRows * g;
      const int rx = static_cast<int>(std::min<int64_t>(kActRows, t.m1 - m0));
      for (int64_t i = 0; i < rows; ++i) {
        for (int j = 0; j < rx; ++j) {
          float v = out[4 * i + j];
          if constexpr (kType == DType::kQ4_1) v += m[4 * i + j];
          t.y[(m0 + j) * t.ldy + n + i] = v;
        }
      }
    }
  }
}

// The tile for one weight type.
template <bool kVnni>
void RunGemmTile(DType type, const TileArgs& t) {
  switch (type) {
    case DType::kQ8_0:
      TileGemm<DType::kQ8_0, kVnni>(t);
      return;
    case DType::kQ4_0:
      TileGemm<DType::kQ4_0, kVnni>(t);
      return;
    case DType::kQ4_1:
      TileGemm<DType::kQ4_1, kVnni>(t);
      return;
    default:
      return;
  }
}

}  // namespace
}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_MATMUL_QUANT_GEMM_IMPL_H_
