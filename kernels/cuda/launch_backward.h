// Plain launchers for the CUDA backward ops, one group per <op>_backward.cu file, in the style of
// launch_ops.h: device pointers, sizes already validated by the host glue (ops_backward.cc), a
// stream; each enqueues its kernels and returns the launch error. No abseil here: nvcc compiles
// the .cu files that include this header.
#ifndef ANVIL_KERNELS_CUDA_LAUNCH_BACKWARD_H_
#define ANVIL_KERNELS_CUDA_LAUNCH_BACKWARD_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace anvil::cuda {

// rms_norm_backward.cu. x, dy, dx: [t][c]; w: [c]; dw: [c] or null. dx and dw accumulate.
// `row_scale` is device scratch of t floats (used only when dw is not null). t, c >= 1.
cudaError_t LaunchRmsNormBackward(const float* x, const float* w, const float* dy, float* dx,
                                  float* dw, int64_t t, int64_t c, float eps, float* row_scale,
                                  cudaStream_t stream);

// attention_backward.cu. q, out, dout, dq: [t][h][d]; k, v, dk, dv: [t][h_kv][d]; dq, dk, dv
// overwritten. `stats` is device scratch of 2 * t * h floats (each row's log-sum-exp and
// sum(dout * out)). 1 <= d <= kAttentionMaxHeadDim (launch_ops.h), h % h_kv == 0, t >= 1.
cudaError_t LaunchAttentionBackward(const float* q, const float* k, const float* v,
                                    const float* out, const float* dout, float* dq, float* dk,
                                    float* dv, int64_t t, int64_t h, int64_t h_kv, int64_t d,
                                    float scale, float* stats, cudaStream_t stream);

// swiglu_backward.cu. gate, up, dout, dgate, dup: [n]; dgate or dup may alias dout. n >= 1.
cudaError_t LaunchSwiGluBackward(const float* gate, const float* up, const float* dout,
                                 float* dgate, float* dup, int64_t n, cudaStream_t stream);

// embedding_backward.cu. ids: [t]. The check lowers *bad_pos (device, 0xffffffff before) to the
// first position whose id is outside [0, v); the scatter (run only after a clean check) adds
// dy ([t][c]) into the rows of dtable ([v][c]) with atomics: rows hit by several tokens sum in
// an unspecified order.
cudaError_t LaunchEmbeddingIdsCheck(const int32_t* ids, int64_t t, int64_t v, unsigned* bad_pos,
                                    cudaStream_t stream);
cudaError_t LaunchEmbeddingBackward(const int32_t* ids, const float* dy, float* dtable, int64_t t,
                                    int64_t c, cudaStream_t stream);

// cross_entropy_backward.cu. logits, dlogits: [t][v] (may alias); lse, targets, dloss: [t].
// *bad_row (device) must hold 0xffffffff before the launch; the kernel lowers it to the first row
// whose target is >= v and zero-fills that row, as it does rows with a negative target.
cudaError_t LaunchCrossEntropyBackward(const float* logits, const float* lse,
                                       const int32_t* targets, const float* dloss, float* dlogits,
                                       int64_t t, int64_t v, unsigned* bad_row,
                                       cudaStream_t stream);

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_LAUNCH_BACKWARD_H_
