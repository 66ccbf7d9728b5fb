// The reference backend: plain single-threaded loops that define each op's result. Every
// faster backend is tested against these.
#ifndef ANVIL_KERNELS_REFERENCE_REFERENCE_H_
#define ANVIL_KERNELS_REFERENCE_REFERENCE_H_

#include "absl/status/status.h"
#include "kernels/adamw.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"
#include "kernels/layer_ops.h"
#include "kernels/layer_ops_backward.h"
#include "kernels/matmul.h"
#include "kernels/softmax.h"

namespace anvil::reference {

absl::Status MatMul(const MatMulArgs& args,
                    MatMulNumerics numerics = MatMulNumerics::kLlamaCpp);
// Dot product of one weight row with one activation row prepared for it (see PrepareActivation).
void RmsNorm(const RmsNormArgs& args);
void Rope(const RopeArgs& args);
void Attention(const AttentionArgs& args);
void SwiGlu(const SwiGluArgs& args);
void AddInPlace(float* y, const float* x, int64_t n);
void GetRows(const GetRowsArgs& args);

// Training ops (softmax.cc, cross_entropy.cc, adamw.cc, gemm.cc).
void Softmax(const SoftmaxArgs& args);
void LogSumExp(const LogSumExpArgs& args);
void CrossEntropy(const CrossEntropyArgs& args);
void AdamW(const AdamWArgs& args);
void Gemm(const GemmArgs& args);

// Backward ops (layer_ops_backward.cc, cross_entropy.cc). The backward of Rope is Rope with
// RopeArgs::inverse.
void RmsNormBackward(const RmsNormBackwardArgs& args);
void AttentionBackward(const AttentionBackwardArgs& args);
void SwiGluBackward(const SwiGluBackwardArgs& args);
void EmbeddingBackward(const EmbeddingBackwardArgs& args);
void CrossEntropyBackward(const CrossEntropyBackwardArgs& args);

// The theta schedule of ggml's rope: cos/sin of theta_i for i in [0, n_rot/2) at `pos`.
void RopeCosSin(int32_t pos, int64_t n_rot, float freq_base, float* cos_out, float* sin_out);

}  // namespace anvil::reference

#endif  // ANVIL_KERNELS_REFERENCE_REFERENCE_H_
