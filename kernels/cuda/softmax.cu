// Row softmax and log-sum-exp on the GPU: one block per row, three (softmax) or two (log-sum-
// exp) passes over the row, which stays in L1/L2 between them. Numerics follow the reference
// (kernels/reference/softmax.cc) except that each e^(z - max) is a float expf (within 2 ulp)
// of the float difference, widened to double for the sum; the block sums in double, so a row
// of V = 49152 terms loses nothing in the accumulation. All -inf rows give NaN, as there.
#include <cstdint>

#include "kernels/cuda/launch_ops.h"
#include "kernels/cuda/reduce.cuh"

namespace anvil::cuda {
namespace {

// max over c of scale * x[c] (each product rounded), NaN skipped by fmaxf; x: [cols].
__device__ __forceinline__ float RowMax(const float* x, int cols, float scale, float* scratch) {
  float mx = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) mx = fmaxf(mx, __fmul_rn(scale, x[c]));
  return BlockMax(mx, scratch);
}

// sum over c of e^(scale * x[c] - mx), terms in float, sum in double; x: [cols].
__device__ __forceinline__ double RowExpSum(const float* x, int cols, float scale, float mx,
                                            double* scratch) {
  double sum = 0.0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    sum += static_cast<double>(expf(__fsub_rn(__fmul_rn(scale, x[c]), mx)));
  }
  return BlockSum(sum, scratch);
}

// x, y: [rows][cols]; y may alias x (every read of x precedes, across the reductions'
// barriers, the writes; the last pass reads and writes each element in the same thread).
__global__ void SoftmaxRowKernel(const float* x, float* y, int cols, float scale) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  float* yr = y + row * cols;
  const float mx = RowMax(xr, cols, scale, fscratch);
  const double sum = RowExpSum(xr, cols, scale, mx, dscratch);
  const double inv = 1.0 / sum;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    const float e = expf(__fsub_rn(__fmul_rn(scale, xr[c]), mx));
    yr[c] = static_cast<float>(static_cast<double>(e) * inv);
  }
}

// x: [rows][cols]; out: [rows].
__global__ void LogSumExpRowKernel(const float* x, float* out, int cols) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * cols;
  const float mx = RowMax(xr, cols, 1.0f, fscratch);
  const double sum = RowExpSum(xr, cols, 1.0f, mx, dscratch);
  if (threadIdx.x == 0) out[row] = static_cast<float>(static_cast<double>(mx) + log(sum));
}

}  // namespace

cudaError_t LaunchSoftmax(const float* x, float* y, int64_t rows, int64_t cols, float scale,
                          cudaStream_t stream) {
  SoftmaxRowKernel<<<static_cast<unsigned>(rows), RowBlockThreads(cols), 0, stream>>>(
      x, y, static_cast<int>(cols), scale);
  return cudaGetLastError();
}

cudaError_t LaunchLogSumExp(const float* x, float* out, int64_t rows, int64_t cols,
                            cudaStream_t stream) {
  LogSumExpRowKernel<<<static_cast<unsigned>(rows), RowBlockThreads(cols), 0, stream>>>(
      x, out, static_cast<int>(cols));
  return cudaGetLastError();
}

}  // namespace anvil::cuda
