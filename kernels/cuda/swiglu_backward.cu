// SwiGluBackward on the GPU (layer_ops_backward.h): a grid-stride elementwise loop. With
// s = sigmoid(g) = 1 / (1 + e^-g) (expf, within 2 ulp): dup = dout * g * s and
// dgate = dout * up * s * (1 + g * (1 - s)). Each thread reads its element's three inputs before
// writing either output, so dgate or dup may alias dout.
#include <cstdint>

#include "kernels/cuda/launch_backward.h"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

// gate, up, dout, dgate, dup: [n].
__global__ void SwiGluBackwardKernel(const float* gate, const float* up, const float* dout,
                                     float* dgate, float* dup, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = gate[i], u = up[i], d = dout[i];
    const float s = 1.0f / (1.0f + expf(-g));  // e^-g = inf gives s = 0 and both outputs 0
    dup[i] = d * (g * s);
    dgate[i] = (d * u) * s * fmaf(g, 1.0f - s, 1.0f);
  }
}

}  // namespace

cudaError_t LaunchSwiGluBackward(const float* gate, const float* up, const float* dout,
                                 float* dgate, float* dup, int64_t n, cudaStream_t stream) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  SwiGluBackwardKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(gate, up, dout,
                                                                               dgate, dup, n);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
