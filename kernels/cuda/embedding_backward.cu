// EmbeddingBackward on the GPU (layer_ops_backward.h), in two launches: a check that lowers
// *bad_pos to the first token whose id is outside [0, V), and, once the host has seen it clean,
// the scatter-add: one block per token adding its dy row into dtable[id] with atomicAdd, so rows
// hit by several tokens accumulate (in an unspecified order: not bit-reproducible run to run).
#include <cstdint>

#include "kernels/cuda/launch_backward.h"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;

// ids: [t].
__global__ void EmbeddingIdsCheckKernel(const int32_t* ids, int64_t t, int64_t v,
                                        unsigned* bad_pos) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < t && (ids[i] < 0 || ids[i] >= v)) atomicMin(bad_pos, static_cast<unsigned>(i));
}

// ids: [t]; dy: [t][c]; dtable: [v][c]. Ids already checked.
__global__ void EmbeddingScatterAddKernel(const int32_t* ids, const float* dy, float* dtable,
                                          int c) {
  const int64_t tok = blockIdx.x;
  float* dst = dtable + static_cast<int64_t>(ids[tok]) * c;
  const float* src = dy + tok * c;
  for (int i = threadIdx.x; i < c; i += blockDim.x) atomicAdd(dst + i, src[i]);
}

}  // namespace

cudaError_t LaunchEmbeddingIdsCheck(const int32_t* ids, int64_t t, int64_t v, unsigned* bad_pos,
                                    cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>((t + kThreads - 1) / kThreads);
  EmbeddingIdsCheckKernel<<<blocks, kThreads, 0, stream>>>(ids, t, v, bad_pos);
  return cudaGetLastError();
}

cudaError_t LaunchEmbeddingBackward(const int32_t* ids, const float* dy, float* dtable, int64_t t,
                                    int64_t c, cudaStream_t stream) {
  EmbeddingScatterAddKernel<<<static_cast<unsigned>(t), kThreads, 0, stream>>>(ids, dy, dtable,
                                                                               static_cast<int>(c));
  return cudaGetLastError();
}

}  // namespace anvil::cuda
