// Plain launchers for the CUDA layer and training ops, one group per <op>.cu file. They take
// device pointers, sizes already validated by the host glue (kernels/cuda/ops.cc), and a stream;
// they enqueue their kernels and return the launch error (cudaSuccess, or the error of the
// first failed launch). No abseil here: nvcc compiles the .cu files that include this header.
#ifndef ANVIL_KERNELS_CUDA_LAUNCH_OPS_H_
#define ANVIL_KERNELS_CUDA_LAUNCH_OPS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace anvil::cuda {

// rms_norm.cu. x, y: [t][c] (y may alias x); w: [c]. t >= 1, c >= 1.
cudaError_t LaunchRmsNorm(const float* x, const float* w, float* y, int64_t t, int64_t c,
                          float eps, cudaStream_t stream);

// rope.cu. x: [t][h][d] in place; pos: [t]. theta_scale = freq_base^(-2/n_rot), computed on the
// host exactly as the reference does. n_rot even, 2 <= n_rot <= d. sin_sign: 1 (forward) or -1
// (the inverse rotation, RopeArgs::inverse).
cudaError_t LaunchRope(float* x, const int32_t* pos, int64_t t, int64_t h, int64_t d,
                       int64_t n_rot, float theta_scale, bool neox, float sin_sign,
                       cudaStream_t stream);

// attention.cu. q, out: [t][h][d]; k, v: [past+t][h_kv][d]. 1 <= d <= kAttentionMaxHeadDim,
// h % h_kv == 0. `partials` is device scratch of AttentionPartialFloats(...) floats (may be null
// when that is 0). sm_count sizes the split of the key range over blocks.
inline constexpr int kAttentionMaxHeadDim = 128;
struct AttentionPlan {
  int n_splits = 1;     // blocks along the key range per (query tile, kv head)
  int split_keys = 0;   // keys per split (a multiple of the key tile)
  int64_t partial_floats = 0;  // scratch the splits need (0 when n_splits == 1)
};
AttentionPlan PlanAttention(int64_t t, int64_t past, int64_t h, int64_t h_kv, int64_t d,
                            int sm_count);
cudaError_t LaunchAttention(const float* q, const float* k, const float* v, float* out,
                            int64_t t, int64_t past, int64_t h, int64_t h_kv, int64_t d,
                            float scale, const AttentionPlan& plan, float* partials,
                            cudaStream_t stream);

// swiglu.cu. out = silu(gate) * up (out may alias gate); y += x. n >= 1.
cudaError_t LaunchSwiGlu(const float* gate, const float* up, float* out, int64_t n,
                         cudaStream_t stream);
cudaError_t LaunchAddInPlace(float* y, const float* x, int64_t n, cudaStream_t stream);

// get_rows.cu. table: [v][c] raw rows of `row_bytes` bytes in type `dtype` (the value of
// anvil::DType: 0 F32, 1 F16, 2 BF16, 3 Q8_0, 4 Q4_0, 5 Q4_1); ids: [t]; out: [t][c].
// *bad_pos (device) must hold 0xffffffff before the launch; the kernel lowers it to the first
// position whose id is outside [0, v) and writes zeros for that row.
cudaError_t LaunchGetRows(int dtype, const void* table, int64_t row_bytes, const int32_t* ids,
                          float* out, int64_t t, int64_t v, int64_t c, unsigned* bad_pos,
                          cudaStream_t stream);

// softmax.cu. x, y: [rows][cols] (y may alias x); out: [rows].
cudaError_t LaunchSoftmax(const float* x, float* y, int64_t rows, int64_t cols, float scale,
                          cudaStream_t stream);
cudaError_t LaunchLogSumExp(const float* x, float* out, int64_t rows, int64_t cols,
                            cudaStream_t stream);

// cross_entropy.cu. logits: [t][v]; targets, loss: [t]; lse: [t] or null. *bad_row (device)
// must hold 0xffffffff before the launch; the kernel lowers it to the first row whose target is
// >= v and writes loss 0 for that row.
cudaError_t LaunchCrossEntropy(const float* logits, const int32_t* targets, float* loss,
                               float* lse, int64_t t, int64_t v, unsigned* bad_row,
                               cudaStream_t stream);

// adamw.cu. param, grad, m, v: [n]. The float factors of one step, as the reference
// (kernels/reference/adamw_update.h) derives them on the host.
struct AdamWStepFactors {
  float decay, lerp_weight, beta2, one_minus_beta2, bc2_sqrt, eps, neg_step_size;
  bool lerp_small;
};
cudaError_t LaunchAdamW(float* param, const float* grad, float* m, float* v, int64_t n,
                        const AdamWStepFactors& f, cudaStream_t stream);

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_LAUNCH_OPS_H_
