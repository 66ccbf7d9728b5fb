// General single-precision matrix product for training (forward, input gradient and weight
// gradient), BLAS-style on row-major matrices:
//   C[M][N] = alpha * op(A)[M][K] * op(B)[K][N] + beta * C
// op(A) is A [M][K] (lda >= K) or, with trans_a, A^T where A is [K][M] (lda >= M); likewise B
// [K][N] (ldb >= N) or, with trans_b, B^T where B is [N][K] (ldb >= K). beta == 0 means C is
// not read (it may hold NaN). Unlike MatMul this op promises no particular summation order,
// only fp32 accuracy: the CPU backend runs products of at least 32 x 32 x 32 (and 4M
// multiply-adds) as split-bf16 part products on AMX tiles where the CPU has AMX-BF16
// (kernels/cpu/gemm_split_bf16.h: every float split exactly into three bf16 parts, six exact
// part products summed in fp32; measured error below a plain fp32 dot product's; off with
// ANVIL_NO_AMX=1), and everything else with OpenBLAS sgemm (single-threaded per slice of our
// pool); the CUDA backend calls cuBLAS (FP32 compute, no TF32). All are checked against the
// reference loops with a tolerance.
#ifndef ANVIL_KERNELS_GEMM_H_
#define ANVIL_KERNELS_GEMM_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace anvil {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  float alpha = 1.0f;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.0f;
  float* c = nullptr;  // [M][ldc], ldc >= N; must not alias a or b
  int64_t ldc = 0;
};
// InvalidArgument for negative sizes, leading dimensions too small, or null pointers with
// non-empty shapes.
absl::Status Gemm(const ExecContext& ctx, const GemmArgs& args);

// The engine behind Gemm's large products on `ctx`, for benchmark reports: "reference",
// "split-bf16 AMX", "OpenBLAS sgemm", "cuBLAS fp32" or "none" (a CPU build without OpenBLAS).
std::string GemmEngine(const ExecContext& ctx);

}  // namespace anvil

#endif  // ANVIL_KERNELS_GEMM_H_
