// CUDA training GEMM (kernels/gemm.h): validation, then cuBLAS FP32 (no TF32) through
// CublasRowMajorGemm; K == 0 and alpha == 0 scale C by beta with our own kernel (gemm.cu), so
// that beta == 0 never reads C and A, B are never touched, as BLAS promises.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/cublas_gemm.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/launch_matmul.h"

namespace anvil::cuda {

absl::Status Gemm(Context& ctx, const GemmArgs& a) {
  if (a.m < 0 || a.n < 0 || a.k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: negative shape M=", a.m, " N=", a.n, " K=", a.k));
  }
  const int64_t a_cols = a.trans_a ? a.m : a.k, b_cols = a.trans_b ? a.k : a.n;
  if (a.lda < a_cols || a.ldb < b_cols || a.ldc < a.n) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: leading dimensions too small: lda=", a.lda, " (need ", a_cols,
                     "), ldb=", a.ldb, " (need ", b_cols, "), ldc=", a.ldc, " (need ", a.n, ")"));
  }
  if (a.m == 0 || a.n == 0) return absl::OkStatus();
  if (a.c == nullptr) return absl::InvalidArgumentError("gemm: c is null");
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  if (a.k == 0 || a.alpha == 0.0f) {
    return CudaStatus(LaunchScaleMatrix(a.c, a.m, a.n, a.ldc, a.beta, stream), "gemm: scale C");
  }
  if (a.a == nullptr) return absl::InvalidArgumentError("gemm: a is null");
  if (a.b == nullptr) return absl::InvalidArgumentError("gemm: b is null");
  for (int64_t v : {a.m, a.n, a.k, a.lda, a.ldb, a.ldc}) {
    if (v > kCublasMaxDim) {
      return absl::InvalidArgumentError(
          absl::StrCat("gemm: M=", a.m, " N=", a.n, " K=", a.k, " lda=", a.lda, " ldb=", a.ldb,
                       " ldc=", a.ldc, ": each must be below 2^31 for cuBLAS; split the product"));
    }
  }
  RowMajorGemm g;
  g.trans_a = a.trans_a;
  g.trans_b = a.trans_b;
  g.m = a.m;
  g.n = a.n;
  g.k = a.k;
  g.alpha = a.alpha;
  g.a = a.a;
  g.lda = a.lda;
  g.b = a.b;
  g.ldb = a.ldb;
  g.beta = a.beta;
  g.c = a.c;
  g.ldc = a.ldc;
  return CublasRowMajorGemm(ctx, g, "gemm");
}

}  // namespace anvil::cuda
