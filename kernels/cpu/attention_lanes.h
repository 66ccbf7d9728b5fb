// Attention kernels for paged K/V blocks that keep their keys in lanes (AttentionArgs::
// blocks_transposed, 16-row blocks): AVX-512, called by attention.cc only when
// HasAvx512Vnni(). Bit-identical to the reference order; see attention_lanes_avx512.cc.
#ifndef ANVIL_KERNELS_CPU_ATTENTION_LANES_H_
#define ANVIL_KERNELS_CPU_ATTENTION_LANES_H_

#include <cstdint>

namespace anvil::cpu {

inline constexpr int64_t kLaneBlockKeys = 16;  // keys per block: one 512-bit vector

// e[s] = VecDotOrderF32(q, k_s) * scale for the keys s < n of kv head hk (D % 64 == 0); returns
// their maximum. e has room for n rounded up to 16; the lanes past n hold junk.
float LaneScoresAvx512(const float* q, const float* const* blocks, int64_t hk, int64_t d,
                       int64_t n, float scale, float* e);
// The same over F16 blocks (each element widened to float exactly).
float LaneScoresAvx512(const float* q, const uint16_t* const* blocks, int64_t hk, int64_t d,
                       int64_t n, float scale, float* e);

// For the `heads` query heads g sharing kv head hk: out[g * out_stride + i] = sum over s < n of
// v_s[i] * p[g * p_stride + s], in ggml_vec_dot_f32's order over the keys (vec_dot_order) or
// tinyBLAS's. D % 16 == 0.
void LaneWeightedSumAvx512(const float* p, int64_t p_stride, int heads,
                           const float* const* blocks, int64_t hk, int64_t d, int64_t n,
                           bool vec_dot_order, float* out, int64_t out_stride);
void LaneWeightedSumAvx512(const float* p, int64_t p_stride, int heads,
                           const uint16_t* const* blocks, int64_t hk, int64_t d, int64_t n,
                           bool vec_dot_order, float* out, int64_t out_stride);

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_ATTENTION_LANES_H_
