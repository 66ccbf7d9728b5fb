// RmsNorm on the GPU: one block per row. It keeps the reference's roundings (kernels/reference/
// layer_ops.cc): float squares summed in double (here as a tree, not in index order, so the sum
// may differ in its last double bits), mean rounded to float, scale = 1/sqrt(mean + eps), then
// y = (x * scale) * w with each product rounded (intrinsics, so nvcc cannot contract them).
#include "kernels/cuda/launch_ops.h"
#include "kernels/cuda/reduce.cuh"

namespace anvil::cuda {
namespace {

// x, y: [rows][c] (y may alias x: each thread reads its elements again before writing them,
// and the reduction's barriers separate every read of the first pass from any write).
__global__ void RmsNormRowKernel(const float* x, const float* w, float* y, int c, float eps) {
  __shared__ double scratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * c;
  float* yr = y + row * c;
  double sum = 0.0;
  for (int i = threadIdx.x; i < c; i += blockDim.x) {
    const float xi = xr[i];
    sum += static_cast<double>(__fmul_rn(xi, xi));
  }
  sum = BlockSum(sum, scratch);
  const float mean = static_cast<float>(sum / c);
  const float scale = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(mean, eps)));
  for (int i = threadIdx.x; i < c; i += blockDim.x) {
    yr[i] = __fmul_rn(__fmul_rn(xr[i], scale), w[i]);
  }
}

}  // namespace

cudaError_t LaunchRmsNorm(const float* x, const float* w, float* y, int64_t t, int64_t c,
                          float eps, cudaStream_t stream) {
  const int threads = RowBlockThreads(c);
  RmsNormRowKernel<<<static_cast<unsigned>(t), threads, 0, stream>>>(x, w, y, static_cast<int>(c),
                                                                      eps);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
