// The CPU backend: AVX2 + FMA + F16C kernels, split across a ThreadPool. Each function returns
// Unimplemented for a case it has no kernel for; the dispatcher never falls back silently.
#ifndef ANVIL_KERNELS_CPU_CPU_H_
#define ANVIL_KERNELS_CPU_CPU_H_

#include "absl/status/status.h"
#include "kernels/core/thread_pool.h"
#include "kernels/layer_ops.h"
#include "kernels/matmul.h"

namespace anvil::cpu {

// True when this processor has AVX2, FMA and F16C (checked once).
bool Supported();

absl::Status MatMul(ThreadPool* pool, const MatMulArgs& args);
absl::Status RmsNorm(ThreadPool* pool, const RmsNormArgs& args);
absl::Status Rope(ThreadPool* pool, const RopeArgs& args);
absl::Status Attention(ThreadPool* pool, const AttentionArgs& args);
absl::Status SwiGlu(ThreadPool* pool, const SwiGluArgs& args);
absl::Status AddInPlace(ThreadPool* pool, float* y, const float* x, int64_t n);
absl::Status GetRows(ThreadPool* pool, const GetRowsArgs& args);

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_CPU_H_
