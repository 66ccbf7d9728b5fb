// Per-row cross-entropy on the GPU: one block per row computes the row's max and sum of
// e^(x - max) (float expf terms, double sum, as softmax.cu), then, as the reference does
// (kernels/reference/cross_entropy.cc): lse = float(max + log(sum)) for every row and
// loss = float((max - logit[target]) + log(sum)), 0 for a negative (ignored) target. A target
// >= V is not read: the row's loss is 0 and *bad_row is lowered to the row for the host to report.
#include <cstdint>

#include "kernels/cuda/launch_ops.h"
#include "kernels/cuda/reduce.cuh"

namespace anvil::cuda {
namespace {

// logits: [t][v]; targets, loss: [t]; lse: [t] or null.
__global__ void CrossEntropyRowKernel(const float* logits, const int32_t* targets, float* loss,
                                      float* lse, int v, unsigned* bad_row) {
  __shared__ float fscratch[32];
  __shared__ double dscratch[32];
  const int64_t row = blockIdx.x;
  const float* xr = logits + row * v;
  float mx = -INFINITY;
  for (int c = threadIdx.x; c < v; c += blockDim.x) mx = fmaxf(mx, xr[c]);
  mx = BlockMax(mx, fscratch);
  double sum = 0.0;
  for (int c = threadIdx.x; c < v; c += blockDim.x) {
    sum += static_cast<double>(expf(__fsub_rn(xr[c], mx)));
  }
  sum = BlockSum(sum, dscratch);
  if (threadIdx.x != 0) return;
  const double log_sum = log(sum);
  if (lse != nullptr) lse[row] = static_cast<float>(static_cast<double>(mx) + log_sum);
  const int32_t target = targets[row];
  if (target >= v) {
    atomicMin(bad_row, static_cast<unsigned>(row));
    loss[row] = 0.0f;
  } else if (target < 0) {
    loss[row] = 0.0f;
  } else {
    loss[row] = static_cast<float>((static_cast<double>(mx) - xr[target]) + log_sum);
  }
}

}  // namespace

cudaError_t LaunchCrossEntropy(const float* logits, const int32_t* targets, float* loss,
                               float* lse, int64_t t, int64_t v, unsigned* bad_row,
                               cudaStream_t stream) {
  CrossEntropyRowKernel<<<static_cast<unsigned>(t), RowBlockThreads(v), 0, stream>>>(
      logits, targets, loss, lse, static_cast<int>(v), bad_row);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
