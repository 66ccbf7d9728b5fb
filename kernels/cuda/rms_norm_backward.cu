// RmsNormBackward on the GPU (layer_ops_backward.h). One block per row computes the row's sums
// of x^2 and w*dy*x in double (a tree, as rms_norm.cu), r = (mean + eps)^-1/2 and k = r^3/C * dot
// in double, and adds r*w*dy - k*x to dx; it leaves r in row_scale when dw is wanted. A second
// kernel sums dw over rows without atomics: each block owns 32 columns, its warps stride over the
// rows, and the warps' partials are added in a fixed order, so dw is deterministic.
#include "kernels/cuda/launch_backward.h"
#include "kernels/cuda/reduce.cuh"

namespace anvil::cuda {
namespace {

constexpr int kDwWarps = 8;

// x, dy, dx: [rows][c]; w: [c]; row_scale: [rows] or null.
__global__ void RmsNormBackwardRowKernel(const float* x, const float* w, const float* dy, float* dx,
                                         float* row_scale, int c, float eps) {
  __shared__ double scratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = x + row * c;
  const float* gr = dy + row * c;
  float* dxr = dx + row * c;
  double sum_sq = 0.0, dot = 0.0;
  for (int i = threadIdx.x; i < c; i += blockDim.x) {
    const double xi = xr[i];
    sum_sq += xi * xi;
    dot += static_cast<double>(w[i]) * gr[i] * xi;
  }
  sum_sq = BlockSum(sum_sq, scratch);
  dot = BlockSum(dot, scratch);
  const double r = 1.0 / sqrt(sum_sq / c + static_cast<double>(eps));
  const double k = r * r * r / c * dot;
  for (int i = threadIdx.x; i < c; i += blockDim.x) {
    dxr[i] = static_cast<float>(dxr[i] + (r * w[i] * gr[i] - k * xr[i]));
  }
  if (row_scale != nullptr && threadIdx.x == 0) row_scale[row] = static_cast<float>(r);
}

// dw[i] += sum over rows of dy[row][i] * x[row][i] * row_scale[row]. Block: 32 x kDwWarps
// threads, columns blockIdx.x * 32 + lane.
__global__ void RmsNormBackwardDwKernel(const float* x, const float* dy, const float* row_scale,
                                        float* dw, int64_t rows, int c) {
  __shared__ double partial[kDwWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int col = blockIdx.x * 32 + lane;
  double acc = 0.0;
  if (col < c) {
    for (int64_t row = warp; row < rows; row += kDwWarps) {
      acc += static_cast<double>(dy[row * c + col]) * x[row * c + col] * row_scale[row];
    }
  }
  partial[warp][lane] = acc;
  __syncthreads();
  if (warp == 0 && col < c) {
    double sum = 0.0;
    for (int i = 0; i < kDwWarps; ++i) sum += partial[i][lane];
    dw[col] = static_cast<float>(dw[col] + sum);
  }
}

}  // namespace

cudaError_t LaunchRmsNormBackward(const float* x, const float* w, const float* dy, float* dx,
                                  float* dw, int64_t t, int64_t c, float eps, float* row_scale,
                                  cudaStream_t stream) {
  RmsNormBackwardRowKernel<<<static_cast<unsigned>(t), RowBlockThreads(c), 0, stream>>>(
      x, w, dy, dx, dw != nullptr ? row_scale : nullptr, static_cast<int>(c), eps);
  if (dw == nullptr) return cudaGetLastError();
  const unsigned blocks = static_cast<unsigned>((c + 31) / 32);
  RmsNormBackwardDwKernel<<<blocks, 32 * kDwWarps, 0, stream>>>(x, dy, row_scale, dw, t,
                                                                static_cast<int>(c));
  return cudaGetLastError();
}

}  // namespace anvil::cuda
