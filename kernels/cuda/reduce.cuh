// Warp and block reductions shared by the row kernels (rms_norm, softmax, cross_entropy). Every
// function must be called by all threads of the warp (Warp*) or of the block (Block*), and the
// block size must be a multiple of 32 (at most 1024). Butterfly (xor) shuffles leave the same
// bits in every lane, so all threads see one result.
#ifndef ANVIL_KERNELS_CUDA_REDUCE_CUH_
#define ANVIL_KERNELS_CUDA_REDUCE_CUH_

#include <cuda_runtime.h>

namespace anvil::cuda {

inline constexpr unsigned kFullMask = 0xffffffffu;

template <typename T>
__device__ __forceinline__ T WarpSum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// scratch: __shared__ T[32]. The leading barrier lets callers reuse one scratch array for
// consecutive reductions; every thread then combines the per-warp values in the same order.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = scratch[0];
  for (int i = 1; i < n_warps; ++i) r += scratch[i];
  return r;
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = WarpMax(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = scratch[0];
  for (int i = 1; i < n_warps; ++i) r = fmaxf(r, scratch[i]);
  return r;
}

// Threads for a one-block-per-row kernel over `cols` elements: a multiple of 32 in [32, 1024],
// about eight elements per thread.
inline int RowBlockThreads(long long cols) {
  long long t = (cols / 8 + 31) / 32 * 32;
  if (t < 32) t = 32;
  if (t > 1024) t = 1024;
  return static_cast<int>(t);
}

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_REDUCE_CUH_
