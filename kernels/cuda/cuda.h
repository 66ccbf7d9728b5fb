// The CUDA backend's op entry points, called only from kernels/dispatch.cc (under ANVIL_CUDA).
// All tensor pointers in the argument structs are device pointers; each op validates shapes,
// enqueues its kernels on ctx.stream() and returns without waiting. The kernels themselves live
// in <op>.cu files with plain launchers (launch_*.h); the host glue in *.cc files maps the
// argument structs to launchers and cudaError_t to absl::Status.
#ifndef ANVIL_KERNELS_CUDA_CUDA_H_
#define ANVIL_KERNELS_CUDA_CUDA_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/adamw.h"
#include "kernels/cross_entropy.h"
#include "kernels/cuda/context.h"
#include "kernels/gemm.h"
#include "kernels/layer_ops.h"
#include "kernels/layer_ops_backward.h"
#include "kernels/matmul.h"
#include "kernels/softmax.h"

namespace anvil::cuda {

// Matmul family (matmul.cc, matmul_*.cu, gemm.cc).
absl::Status MatMul(Context& ctx, const MatMulArgs& args);
absl::Status Gemm(Context& ctx, const GemmArgs& args);

// Layer and training ops (ops.cc and one .cu per op).
absl::Status RmsNorm(Context& ctx, const RmsNormArgs& args);
absl::Status Rope(Context& ctx, const RopeArgs& args);
absl::Status Attention(Context& ctx, const AttentionArgs& args);
absl::Status SwiGlu(Context& ctx, const SwiGluArgs& args);
absl::Status AddInPlace(Context& ctx, float* y, const float* x, int64_t n);
absl::Status GetRows(Context& ctx, const GetRowsArgs& args);
absl::Status Softmax(Context& ctx, const SoftmaxArgs& args);
absl::Status LogSumExp(Context& ctx, const LogSumExpArgs& args);
absl::Status CrossEntropy(Context& ctx, const CrossEntropyArgs& args);
absl::Status AdamW(Context& ctx, const AdamWArgs& args);

// Backward ops (ops_backward.cc and one <op>_backward.cu per op).
absl::Status RmsNormBackward(Context& ctx, const RmsNormBackwardArgs& args);
absl::Status AttentionBackward(Context& ctx, const AttentionBackwardArgs& args);
absl::Status SwiGluBackward(Context& ctx, const SwiGluBackwardArgs& args);
absl::Status EmbeddingBackward(Context& ctx, const EmbeddingBackwardArgs& args);
absl::Status CrossEntropyBackward(Context& ctx, const CrossEntropyBackwardArgs& args);

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_CUDA_H_
