// The one GEMM case the training Gemm does not hand to cuBLAS: K == 0 (or alpha == 0), where
// C = beta * C, and beta == 0 must write zeros without reading C (it may hold NaN). Everything
// else is cublasGemmEx in kernels/cuda/gemm.cc.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/launch_matmul.h"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;

// c: [rows][ldc] row-major; touches columns [0, cols) only.
__global__ void ScaleMatrixKernel(float* __restrict__ c, int64_t rows, int64_t cols, int64_t ldc,
                                  float beta) {
  const int64_t total = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    float* p = c + (i / cols) * ldc + i % cols;
    *p = beta == 0.0f ? 0.0f : beta * *p;
  }
}

}  // namespace

cudaError_t LaunchScaleMatrix(float* c, int64_t rows, int64_t cols, int64_t ldc, float beta,
                              cudaStream_t stream) {
  if (rows < 0 || cols < 0 || ldc < cols) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  const int64_t total = rows * cols;
  const int ctas = static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 16));
  ScaleMatrixKernel<<<ctas, kThreads, 0, stream>>>(c, rows, cols, ldc, beta);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
