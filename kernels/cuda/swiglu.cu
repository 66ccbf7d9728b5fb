// Elementwise ops on the GPU: SwiGlu (out = silu(gate) * up) and AddInPlace (y += x). Both are
// memory-bound grid-stride loops, with 16-byte accesses when every pointer is 16-byte aligned.
// SwiGlu reproduces the reference's arithmetic (kernels/reference/layer_ops.cc) step by step:
// silu(g) = g / (1 + e^(0 - g)) with ggml's polynomial exp, each operation rounded on its own
// or fused exactly where the reference fuses, so the results are the reference's bits.
#include <cstdint>

#include "kernels/cuda/launch_ops.h"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

// ggml_v_expf as kernels/reference/layer_ops.cc's ExpLikeGgml writes it: x = n*ln2 + b,
// a degree-5 polynomial in b with these fused multiply-adds, then ldexp by n.
__device__ __forceinline__ float ExpLikeGgml(float x) {
  const float shifter = 0x1.8p23f;
  const float z = fmaf(x, 0x1.715476p+0f, shifter);
  const float n = __fsub_rn(z, shifter);
  const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
  const float u = __fmul_rn(b, b);
  const float j = fmaf(fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                            fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                       u, fmaf(0x1.ffffecp-1f, b, 1.0f));
  if (isnan(n)) return n;
  if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
  return ldexpf(j, static_cast<int>(n));
}

__device__ __forceinline__ float SwiGluOne(float g, float up) {
  const float silu = __fdiv_rn(g, __fadd_rn(1.0f, ExpLikeGgml(__fsub_rn(0.0f, g))));
  return __fmul_rn(silu, up);
}

// gate, up, out: [n]; out may alias gate (each element is read before it is written, by the
// same thread).
__global__ void SwiGluScalarKernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = SwiGluOne(gate[i], up[i]);
  }
}

// As above over n4 = n/4 float4 groups; the caller handles the n % 4 tail with the scalar
// kernel. All three pointers 16-byte aligned.
__global__ void SwiGluVec4Kernel(const float4* gate, const float4* up, float4* out, int64_t n4) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += stride) {
    const float4 g = gate[i], u = up[i];
    out[i] = make_float4(SwiGluOne(g.x, u.x), SwiGluOne(g.y, u.y), SwiGluOne(g.z, u.z),
                         SwiGluOne(g.w, u.w));
  }
}

// y, x: [n].
__global__ void AddScalarKernel(float* y, const float* x, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    y[i] = __fadd_rn(y[i], x[i]);
  }
}

__global__ void AddVec4Kernel(float4* y, const float4* x, int64_t n4) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n4;
       i += stride) {
    float4 a = y[i];
    const float4 b = x[i];
    a.x = __fadd_rn(a.x, b.x);
    a.y = __fadd_rn(a.y, b.y);
    a.z = __fadd_rn(a.z, b.z);
    a.w = __fadd_rn(a.w, b.w);
    y[i] = a;
  }
}

unsigned Blocks(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b > kMaxBlocks) b = kMaxBlocks;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b);
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

cudaError_t LaunchSwiGlu(const float* gate, const float* up, float* out, int64_t n,
                         cudaStream_t stream) {
  if (Aligned16(gate) && Aligned16(up) && Aligned16(out)) {
    const int64_t n4 = n / 4, done = n4 * 4;
    if (n4 > 0) {
      SwiGluVec4Kernel<<<Blocks(n4), kThreads, 0, stream>>>(
          reinterpret_cast<const float4*>(gate), reinterpret_cast<const float4*>(up),
          reinterpret_cast<float4*>(out), n4);
    }
    if (done < n) {
      SwiGluScalarKernel<<<1, kThreads, 0, stream>>>(gate + done, up + done, out + done,
                                                     n - done);
    }
  } else {
    SwiGluScalarKernel<<<Blocks(n), kThreads, 0, stream>>>(gate, up, out, n);
  }
  return cudaGetLastError();
}

cudaError_t LaunchAddInPlace(float* y, const float* x, int64_t n, cudaStream_t stream) {
  if (Aligned16(y) && Aligned16(x)) {
    const int64_t n4 = n / 4, done = n4 * 4;
    if (n4 > 0) {
      AddVec4Kernel<<<Blocks(n4), kThreads, 0, stream>>>(reinterpret_cast<float4*>(y),
                                                        reinterpret_cast<const float4*>(x), n4);
    }
    if (done < n) AddScalarKernel<<<1, kThreads, 0, stream>>>(y + done, x + done, n - done);
  } else {
    AddScalarKernel<<<Blocks(n), kThreads, 0, stream>>>(y, x, n);
  }
  return cudaGetLastError();
}

}  // namespace anvil::cuda
