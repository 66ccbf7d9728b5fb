// One AdamW step on the GPU: an elementwise grid-stride loop that repeats the reference's
// float operations in the reference's order (kernels/reference/adamw_update.h), every product,
// sum, quotient and square root rounded on its own (intrinsics, so nvcc cannot contract them)
// and the lerp one explicit fma, so each element gets the reference's bits. The float factors
// are derived on the host (kernels/cuda/ops.cc) by the reference's own MakeAdamWFactors.
#include <cstdint>

#include "kernels/cuda/launch_ops.h"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

// param, grad, m, v: [n].
__global__ void AdamWKernel(float* param, const float* grad, float* m, float* v, int64_t n,
                            AdamWStepFactors f) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = grad[i];
    float p = __fmul_rn(param[i], f.decay);
    float mi = m[i];
    const float d = __fsub_rn(g, mi);
    mi = f.lerp_small ? fmaf(f.lerp_weight, d, mi) : fmaf(__fsub_rn(f.lerp_weight, 1.0f), d, g);
    const float vi =
        __fadd_rn(__fmul_rn(v[i], f.beta2), __fmul_rn(__fmul_rn(f.one_minus_beta2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), f.bc2_sqrt), f.eps);
    p = __fadd_rn(p, __fdiv_rn(__fmul_rn(f.neg_step_size, mi), denom));
    param[i] = p;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

cudaError_t LaunchAdamW(float* param, const float* grad, float* m, float* v, int64_t n,
                        const AdamWStepFactors& f, cudaStream_t stream) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  AdamWKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(param, grad, m, v, n, f);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
