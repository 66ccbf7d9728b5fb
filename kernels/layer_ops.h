// The per-token ops of a llama-family layer, each with a plain argument struct. Shape legend:
// T tokens, C channels, H query heads, Hkv key/value heads, D head dim, F feed-forward width,
// S cached positions, V vocab rows.
#ifndef ANVIL_KERNELS_LAYER_OPS_H_
#define ANVIL_KERNELS_LAYER_OPS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "kernels/core/half.h"
#include "kernels/dtype.h"

namespace anvil {

// y = x / sqrt(mean(x^2) + eps) * w, per row; the float squares are accumulated in double
// (as ggml does) and the normalized value is rounded to float before the weight multiply.
struct RmsNormArgs {
  const float* x = nullptr;  // [T][C]
  const float* w = nullptr;  // [C]
  float* y = nullptr;        // [T][C]; may alias x
  int64_t t = 0, c = 0;
  float eps = 1e-5f;
};
absl::Status RmsNorm(const ExecContext& ctx, const RmsNormArgs& args);

// Rotary embedding in place, llama.cpp's NORM mode (adjacent pairs (2i, 2i+1)) or NEOX mode
// (pairs (i, i + n_rot/2)). theta_i = pos * freq_base^(-2i/n_rot), computed iteratively in
// float as ggml does. With `inverse` each pair is rotated by -theta instead (sin negated): the
// backward pass of Rope, applied in place to dQ/dK.
struct RopeArgs {
  float* x = nullptr;          // [T][H][D]
  const int32_t* pos = nullptr;  // [T]
  int64_t t = 0, h = 0, d = 0;
  int64_t n_rot = 0;           // rotated dims (<= D, even)
  float freq_base = 10000.0f;
  bool neox = false;
  bool inverse = false;        // rotate by -theta (the transpose of the forward rotation)
};
absl::Status Rope(const ExecContext& ctx, const RopeArgs& args);

// Causal grouped-query attention of T new queries against S = past + T cached keys/values:
// query t (at absolute position past + t) sees cache rows 0..past+t. softmax in float with
// max subtraction; query head h uses kv head h / (H / Hkv).
struct AttentionArgs {
  const float* q = nullptr;  // [T][H][D]
  const float* k = nullptr;  // [S][Hkv][D] (the cache; rows past past+T are ignored)
  const float* v = nullptr;  // [S][Hkv][D]
  float* out = nullptr;      // [T][H][D]
  int64_t t = 0, past = 0, h = 0, h_kv = 0, d = 0;
  float scale = 1.0f;        // usually 1/sqrt(D)
  // Paged cache (optional, host backends only; the server's KV block pool): row s of K is at
  // k_blocks[s / block_rows] + (s % block_rows) * Hkv * D, likewise V, and k / v are unused.
  // Same results as the rows gathered into one array.
  const float* const* k_blocks = nullptr;
  const float* const* v_blocks = nullptr;
  int64_t block_rows = 0;
  // Paged blocks with their keys in lanes: a block is [Hkv][D][block_rows], element (s, hk, i)
  // at blocks[s / block_rows][(hk * D + i) * block_rows + s % block_rows]. Same results.
  bool blocks_transposed = false;
  // Transposed paged blocks of IEEE halves (an F16 KV cache), set instead of k_blocks /
  // v_blocks: each element is widened to float exactly, then everything is as above.
  const uint16_t* const* k_blocks_f16 = nullptr;
  const uint16_t* const* v_blocks_f16 = nullptr;
};
absl::Status Attention(const ExecContext& ctx, const AttentionArgs& args);

// Causal self-attention over whole sequences for training: the math of Attention with past = 0
// and contiguous q/k/v (no paged blocks), but without Attention's promise of the reference's
// summation order. The CPU backend runs blocked products (S = Q K^T, P = softmax, O = P V, as
// AttentionBackward recomputes them), several times faster at T = 256 than Attention's key-by-key
// order; the reference and CUDA backends run Attention. InvalidArgument for past != 0, paged
// blocks or H not a multiple of Hkv.
absl::Status CausalAttention(const ExecContext& ctx, const AttentionArgs& args);

// Whether `ctx`'s Attention has a kernel that reads transposed blocks (blocks_transposed) in
// place for head dim D and block_rows; otherwise it gathers them into rows first (slower than
// row blocks). The server's KV pool picks its layout by this.
bool TransposedKvBlocksAreFast(const ExecContext& ctx, int64_t d, int64_t block_rows);

// Row s of an attention cache (K: k / k_blocks, V: v / v_blocks), kv head hk; row blocks only.
inline const float* CacheRow(const AttentionArgs& a, const float* flat, const float* const* blocks,
                             int64_t s, int64_t hk) {
  const int64_t row = a.h_kv * a.d;
  if (blocks == nullptr) return flat + s * row + hk * a.d;
  return blocks[s / a.block_rows] + (s % a.block_rows) * row + hk * a.d;
}

// Element i of row s of an attention cache, kv head hk, in any layout (half: F16 blocks).
inline float CacheAt(const AttentionArgs& a, const float* flat, const float* const* blocks,
                     const uint16_t* const* half, int64_t s, int64_t hk, int64_t i) {
  if (half == nullptr && (blocks == nullptr || !a.blocks_transposed)) {
    return CacheRow(a, flat, blocks, s, hk)[i];
  }
  const int64_t at = (hk * a.d + i) * a.block_rows + s % a.block_rows;
  return half != nullptr ? HalfToFloat(half[s / a.block_rows][at]) : blocks[s / a.block_rows][at];
}

// out = silu(gate) * up, elementwise.
struct SwiGluArgs {
  const float* gate = nullptr;  // [T][F]
  const float* up = nullptr;    // [T][F]
  float* out = nullptr;         // [T][F]; may alias gate
  int64_t n = 0;                // T*F
};
absl::Status SwiGlu(const ExecContext& ctx, const SwiGluArgs& args);

// y += x, elementwise.
absl::Status AddInPlace(const ExecContext& ctx, float* y, const float* x, int64_t n);

// Embedding lookup: rows `ids` of a [V][C] table in any DType, dequantized.
struct GetRowsArgs {
  DType type = DType::kF32;
  const void* table = nullptr;  // [V][C]
  const int32_t* ids = nullptr; // [T]
  float* out = nullptr;         // [T][C]
  int64_t t = 0, v = 0, c = 0;
};
absl::Status GetRows(const ExecContext& ctx, const GetRowsArgs& args);

}  // namespace anvil

#endif  // ANVIL_KERNELS_LAYER_OPS_H_
