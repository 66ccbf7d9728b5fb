// The CPU backend: AVX2 + FMA + F16C kernels, split across a ThreadPool. Each function returns
// Unimplemented for a case it has no kernel for; the dispatcher never falls back silently.
#ifndef ANVIL_KERNELS_CPU_CPU_H_
#define ANVIL_KERNELS_CPU_CPU_H_

#include "absl/status/status.h"
#include "kernels/adamw.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"
#include "kernels/layer_ops.h"
#include "kernels/layer_ops_backward.h"
#include "kernels/matmul.h"
#include "kernels/softmax.h"

namespace anvil::cpu {

// True when this processor has AVX2, FMA and F16C (checked once).
bool Supported();

absl::Status MatMul(ThreadPool* pool, const MatMulArgs& args,
                    MatMulNumerics numerics = MatMulNumerics::kLlamaCpp);
// Entries must share x, M, K and w_type (MatMulShared in kernels/matmul.h checks that).
absl::Status MatMulShared(ThreadPool* pool, absl::Span<const MatMulArgs> calls,
                          MatMulNumerics numerics = MatMulNumerics::kLlamaCpp);
absl::Status RmsNorm(ThreadPool* pool, const RmsNormArgs& args);
absl::Status Rope(ThreadPool* pool, const RopeArgs& args);
absl::Status Attention(ThreadPool* pool, const AttentionArgs& args);
// Whether Attention reads blocks_transposed caches in place (AVX-512, D % 64 == 0, 16-row
// blocks); it gathers them into rows otherwise.
bool AttentionReadsTransposedBlocks(int64_t d, int64_t block_rows);
// attention_causal.cc: blocked products, not Attention's order.
absl::Status CausalAttention(ThreadPool* pool, const AttentionArgs& args);
absl::Status SwiGlu(ThreadPool* pool, const SwiGluArgs& args);
absl::Status AddInPlace(ThreadPool* pool, float* y, const float* x, int64_t n);
absl::Status GetRows(ThreadPool* pool, const GetRowsArgs& args);

// Training ops (softmax.cc, cross_entropy.cc, adamw.cc; gemm_openblas.cc calls OpenBLAS).
absl::Status Softmax(ThreadPool* pool, const SoftmaxArgs& args);
absl::Status LogSumExp(ThreadPool* pool, const LogSumExpArgs& args);
absl::Status CrossEntropy(ThreadPool* pool, const CrossEntropyArgs& args);
absl::Status AdamW(ThreadPool* pool, const AdamWArgs& args);
absl::Status Gemm(ThreadPool* pool, const GemmArgs& args);
const char* GemmEngineName();  // "split-bf16 AMX", "OpenBLAS sgemm" or "none"

// Backward ops (rms_norm_backward.cc, attention_backward.cc, elementwise_backward.cc,
// cross_entropy_backward.cc). Not bit-identical to the reference: tested within atol + rtol.
absl::Status RmsNormBackward(ThreadPool* pool, const RmsNormBackwardArgs& args);
absl::Status AttentionBackward(ThreadPool* pool, const AttentionBackwardArgs& args);
absl::Status SwiGluBackward(ThreadPool* pool, const SwiGluBackwardArgs& args);
absl::Status EmbeddingBackward(ThreadPool* pool, const EmbeddingBackwardArgs& args);
absl::Status CrossEntropyBackward(ThreadPool* pool, const CrossEntropyBackwardArgs& args);

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_CPU_H_
