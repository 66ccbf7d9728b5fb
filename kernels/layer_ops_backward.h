// The backward ops of a llama-family layer (the forwards are in layer_ops.h), each with a plain
// argument struct; the backward of Rope is Rope itself with RopeArgs::inverse, and that of the
// loss is CrossEntropyBackward (cross_entropy.h). Shape legend as in layer_ops.h: T tokens,
// C channels, H query heads, Hkv key/value heads, D head dim, V vocab rows.
#ifndef ANVIL_KERNELS_LAYER_OPS_BACKWARD_H_
#define ANVIL_KERNELS_LAYER_OPS_BACKWARD_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace anvil {

// Backward of RmsNorm (y = x * r * w with r = (mean(x^2) + eps)^-1/2, per row):
//   dw[i] += sum over rows of dy[i] * x[i] * r
//   dx[i] += r * w[i] * dy[i] - (r^3 / C) * x[i] * sum_j(w[j] * dy[j] * x[j])
// dx += dL/dx, dw += dL/dw (both ACCUMULATED, caller zeroes them). dw may be null (frozen).
struct RmsNormBackwardArgs {
  const float* x = nullptr;   // [T][C] forward input
  const float* w = nullptr;   // [C]
  const float* dy = nullptr;  // [T][C]
  float* dx = nullptr;        // [T][C] accumulated
  float* dw = nullptr;        // [C] accumulated, may be null
  int64_t t = 0, c = 0;
  float eps = 1e-5f;
};
absl::Status RmsNormBackward(const ExecContext& ctx, const RmsNormBackwardArgs& args);

// Causal self-attention over ONE sequence without a cache (past = 0, S = T), the backward of
// Attention(). q,k already rotated. Recomputes the probabilities from q and k. With
// P = softmax(scale * q k^T) (causal) and Delta[t][h] = sum_d dout * out:
//   dv = P^T dout,  dS = P * (dout v^T - Delta),  dq = scale * dS k,  dk = scale * dS^T q,
// dk and dv summed over the H / Hkv query heads that share a kv head.
struct AttentionBackwardArgs {
  const float* q = nullptr;     // [T][H][D]
  const float* k = nullptr;     // [T][Hkv][D]
  const float* v = nullptr;     // [T][Hkv][D]
  const float* out = nullptr;   // [T][H][D] the forward output
  const float* dout = nullptr;  // [T][H][D]
  float* dq = nullptr;          // [T][H][D]   overwritten
  float* dk = nullptr;          // [T][Hkv][D] overwritten (sums over the query heads of a group)
  float* dv = nullptr;          // [T][Hkv][D] overwritten
  int64_t t = 0, h = 0, h_kv = 0, d = 0;
  float scale = 1.0f;
};
absl::Status AttentionBackward(const ExecContext& ctx, const AttentionBackwardArgs& args);

// out = silu(gate) * up backward: with s = sigmoid(gate),
//   dup = dout * gate * s,  dgate = dout * up * s * (1 + gate * (1 - s)).
// dgate/dup overwritten; either may alias dout.
struct SwiGluBackwardArgs {
  const float* gate = nullptr;  // [n]
  const float* up = nullptr;    // [n]
  const float* dout = nullptr;  // [n]
  float* dgate = nullptr;       // [n]
  float* dup = nullptr;         // [n]
  int64_t n = 0;
};
absl::Status SwiGluBackward(const ExecContext& ctx, const SwiGluBackwardArgs& args);

// Embedding backward: dtable[ids[t]] += dy[t] (scatter-add; repeated ids accumulate).
struct EmbeddingBackwardArgs {
  const int32_t* ids = nullptr;  // [T]
  const float* dy = nullptr;     // [T][C]
  float* dtable = nullptr;       // [V][C] accumulated
  int64_t t = 0, v = 0, c = 0;
};
// InvalidArgument naming the index for an id outside [0, V) (host backends check first).
absl::Status EmbeddingBackward(const ExecContext& ctx, const EmbeddingBackwardArgs& args);

}  // namespace anvil

#endif  // ANVIL_KERNELS_LAYER_OPS_BACKWARD_H_
