// Row-major GEMM on cuBLAS, shared by the CUDA MatMul (float weights, and quantized weights at
// large M) and the training Gemm. cuBLAS is column-major; a row-major C = op(A) op(B) is the
// column-major C^T = op(B)^T op(A)^T, so the wrapper swaps the operands and passes the same
// buffers. Always FP32 compute without TF32 (CUBLAS_COMPUTE_32F under the handle's default
// math mode); inputs may be F32, F16 or BF16, the output is F32. Host code only.
#ifndef ANVIL_KERNELS_CUDA_CUBLAS_GEMM_H_
#define ANVIL_KERNELS_CUDA_CUBLAS_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/context.h"

namespace anvil::cuda {

enum class GemmElem { kF32, kF16, kBF16 };

// c[M][N] (leading dimension ldc) = alpha * op(A)[M][K] * op(B)[K][N] + beta * c, with the
// layouts of kernels/gemm.h: A is [M][lda] or, with trans_a, [K][lda]; B is [K][ldb] or, with
// trans_b, [N][ldb]. Requires M, N, K >= 1, every size and leading dimension below 2^31, and
// leading dimensions at least the row lengths (the callers validate; violations come back as
// Internal from cuBLAS). beta == 0 does not read c.
struct RowMajorGemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  const void* a = nullptr;
  GemmElem a_type = GemmElem::kF32;
  int64_t lda = 0;
  const void* b = nullptr;
  GemmElem b_type = GemmElem::kF32;
  int64_t ldb = 0;
  float beta = 0.0f;
  float* c = nullptr;
  int64_t ldc = 0;
};

// Enqueues the product on ctx's stream (the cuBLAS handle is bound to it). `what` names the
// caller in errors.
absl::Status CublasRowMajorGemm(Context& ctx, const RowMajorGemm& g, const char* what);

// Largest size or leading dimension cuBLAS's 32-bit interface takes.
inline constexpr int64_t kCublasMaxDim = 0x7FFFFFFF;

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_CUBLAS_GEMM_H_
