// Rotary embedding on the GPU: one block per token. The block first builds the token's cos/sin
// table in shared memory with the reference's float theta schedule (theta_0 = pos, theta_{i+1}
// = theta_i * theta_scale, every product rounded; theta_scale comes from the host's powf), with
// cos/sin taken in double and rounded once, which matches the host's correctly rounded
// cosf/sinf. The rotation keeps the reference's fused form (kernels/reference/layer_ops.cc):
//   y0 = fma(x0, cos, -(x1 * sin)),  y1 = fma(x0, sin, x1 * cos).
// sin_sign = -1 negates the sines (exactly): the inverse rotation, Rope's backward pass.
#include "kernels/cuda/launch_ops.h"

namespace anvil::cuda {
namespace {

constexpr int kRopeThreads = 128;

// x: [t][h][d] in place; pos: [t]. Dynamic shared memory: 2 * (n_rot/2) floats.
__global__ void RopeTokenKernel(float* x, const int32_t* pos, int h, int d, int n_rot,
                                float theta_scale, bool neox, float sin_sign) {
  extern __shared__ float table[];  // cos[half], then sin[half]
  const int half = n_rot / 2;
  float* cs = table;
  float* sn = table + half;
  const int64_t tok = blockIdx.x;
  const float p = static_cast<float>(pos[tok]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float theta = p;
    for (int j = 0; j < i; ++j) theta = __fmul_rn(theta, theta_scale);
    cs[i] = static_cast<float>(cos(static_cast<double>(theta)));
    sn[i] = sin_sign * static_cast<float>(sin(static_cast<double>(theta)));
  }
  __syncthreads();
  float* xt = x + tok * h * d;
  const int pairs = h * half;
  for (int idx = threadIdx.x; idx < pairs; idx += blockDim.x) {
    const int head = idx / half, i = idx - head * half;
    float* xh = xt + static_cast<int64_t>(head) * d;
    const int i0 = neox ? i : 2 * i;
    const int i1 = neox ? i + half : 2 * i + 1;
    const float x0 = xh[i0], x1 = xh[i1];
    xh[i0] = fmaf(x0, cs[i], -__fmul_rn(x1, sn[i]));
    xh[i1] = fmaf(x0, sn[i], __fmul_rn(x1, cs[i]));
  }
}

}  // namespace

cudaError_t LaunchRope(float* x, const int32_t* pos, int64_t t, int64_t h, int64_t d,
                       int64_t n_rot, float theta_scale, bool neox, float sin_sign,
                       cudaStream_t stream) {
  const size_t shared = static_cast<size_t>(n_rot) * sizeof(float);
  RopeTokenKernel<<<static_cast<unsigned>(t), kRopeThreads, shared, stream>>>(
      x, pos, static_cast<int>(h), static_cast<int>(d), static_cast<int>(n_rot), theta_scale,
      neox, sin_sign);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
