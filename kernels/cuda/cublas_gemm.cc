// Row-major cuBLAS GEMM (see cublas_gemm.h): operand swap for column-major cuBLAS, type mapping,
// and cuBLAS status -> absl::Status.
#include "kernels/cuda/cublas_gemm.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace anvil::cuda {
namespace {

cudaDataType_t ToCuda(GemmElem t) {
  switch (t) {
    case GemmElem::kF32:
      return CUDA_R_32F;
    case GemmElem::kF16:
      return CUDA_R_16F;
    case GemmElem::kBF16:
      return CUDA_R_16BF;
  }
  return CUDA_R_32F;
}

}  // namespace

absl::Status CublasRowMajorGemm(Context& ctx, const RowMajorGemm& g, const char* what) {
  for (int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc}) {
    if (v < 1 || v > kCublasMaxDim) {
      return absl::InternalError(absl::StrCat(what, ": cuBLAS GEMM called with M=", g.m, " N=", g.n,
                                              " K=", g.k, " lda=", g.lda, " ldb=", g.ldb,
                                              " ldc=", g.ldc, " (each must be in [1, 2^31-1])"));
    }
  }
  // Column-major view: C^T [N x M] (ld ldc) = op(B)^T [N x K] * op(A)^T [K x M]. Row-major B
  // without transpose is the column-major N x K matrix B^T itself (ld ldb): CUBLAS_OP_N; with
  // trans_b it is stored K x N column-major and needs CUBLAS_OP_T. Likewise A.
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasStatus_t s = cublasGemmEx(
      static_cast<cublasHandle_t>(ctx.cublas()), op_b, op_a, static_cast<int>(g.n),
      static_cast<int>(g.m), static_cast<int>(g.k), &g.alpha, g.b, ToCuda(g.b_type),
      static_cast<int>(g.ldb), g.a, ToCuda(g.a_type), static_cast<int>(g.lda), &g.beta, g.c,
      CUDA_R_32F, static_cast<int>(g.ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) {
    return absl::InternalError(absl::StrCat(what, ": cublasGemmEx failed: ", cublasGetStatusName(s),
                                            " (", cublasGetStatusString(s), ")"));
  }
  return absl::OkStatus();
}

}  // namespace anvil::cuda
