// CrossEntropyBackward on the GPU (kernels/cross_entropy.h): one block per row,
// dlogits = dloss * (expf(logit - lse) - onehot(target)). Each element is read and written by the
// same thread, so dlogits may alias logits. A row with a negative target is zero-filled; a target
// >= V is not read: its row is zero-filled and *bad_row lowered to it for the host to report.
#include <cstdint>

#include "kernels/cuda/launch_backward.h"
#include "kernels/cuda/reduce.cuh"

namespace anvil::cuda {
namespace {

// logits, dlogits: [t][v]; lse, targets, dloss: [t].
__global__ void CrossEntropyBackwardRowKernel(const float* logits, const float* lse,
                                              const int32_t* targets, const float* dloss,
                                              float* dlogits, int v, unsigned* bad_row) {
  const int64_t row = blockIdx.x;
  const float* xr = logits + row * v;
  float* yr = dlogits + row * v;
  const int32_t target = targets[row];
  if (target < 0 || target >= v) {
    if (target >= v && threadIdx.x == 0) atomicMin(bad_row, static_cast<unsigned>(row));
    for (int c = threadIdx.x; c < v; c += blockDim.x) yr[c] = 0.0f;
    return;
  }
  const float m = lse[row], g = dloss[row];
  for (int c = threadIdx.x; c < v; c += blockDim.x) {
    const float p = expf(xr[c] - m);
    yr[c] = g * (c == target ? p - 1.0f : p);
  }
}

}  // namespace

cudaError_t LaunchCrossEntropyBackward(const float* logits, const float* lse,
                                       const int32_t* targets, const float* dloss, float* dlogits,
                                       int64_t t, int64_t v, unsigned* bad_row,
                                       cudaStream_t stream) {
  CrossEntropyBackwardRowKernel<<<static_cast<unsigned>(t), RowBlockThreads(v), 0, stream>>>(
      logits, lse, targets, dloss, dlogits, static_cast<int>(v), bad_row);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
