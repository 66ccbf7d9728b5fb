// Element conversions the CUDA matmul needs before cuBLAS or the quantized GEMV can run:
// activations f32 -> F16/BF16, activations -> Q8 blocks (bit-identical to the reference's
// QuantizeActivationQ8_0/Q8_1) or their F16 round trip, and quantized weights -> F16.
// Kernels and plain launchers only (declared in launch_matmul.h); the callers own the buffers.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/launch_matmul.h"
#include "kernels/cuda/quant_blocks.cuh"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerCta = kThreads / 32;
// Grid-stride kernels stop growing the grid here; each thread then loops.
constexpr int64_t kMaxCtas = 1 << 16;

int GridFor(int64_t items) {
  return static_cast<int>(std::min<int64_t>((items + kThreads - 1) / kThreads, kMaxCtas));
}

template <HalfType T>
__device__ __forceinline__ uint32_t HalfBits(float v) {
  if constexpr (T == HalfType::kF16) {
    return __half_as_ushort(__float2half_rn(v));
  } else {
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  }
}

template <HalfType T>
__global__ void ConvertToHalfKernel(const float* __restrict__ x, int64_t count,
                                    uint16_t* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += stride) {
    out[i] = static_cast<uint16_t>(HalfBits<T>(x[i]));
  }
}

// Four elements per thread: 16-byte loads, 8-byte stores (x 16-byte and out 8-byte aligned).
template <HalfType T>
__global__ void ConvertToHalfVec4Kernel(const float4* __restrict__ x, int64_t groups,
                                        uint2* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < groups;
       i += stride) {
    const float4 v = __ldcs(x + i);  // read once: do not keep it in L2
    out[i] = make_uint2(HalfBits<T>(v.x) | (HalfBits<T>(v.y) << 16),
                        HalfBits<T>(v.z) | (HalfBits<T>(v.w) << 16));
  }
}

// One warp per 32-element block of x ([m][k] flattened: block b covers x[32b, 32b+32), since k
// is a multiple of 32). Lane j owns element j. The arithmetic is the reference's, operation for
// operation (IEEE division, one rounding multiply, rint = round half to even, RN to fp16), so
// the quantized activations match it bit for bit.
template <bool kRoundTripF16>
__global__ void QuantizeQ8Kernel(const float* __restrict__ x, int64_t total_blocks,
                                 int8_t* __restrict__ q, float* __restrict__ d,
                                 float* __restrict__ s, __half* __restrict__ out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // The quantized GEMV launched next (programmatic dependent launch) may start now and fetch
  // its first weights; it waits for this grid to finish before it reads q, d and s.
  asm volatile("griddepcontrol.launch_dependents;");
  // This kernel is launched the same way (LaunchDependent): it may be resident while the kernel
  // before it (which may have written x, and may still read q) finishes; wait for that here.
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  const int lane = threadIdx.x & 31;
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + (threadIdx.x >> 5);
  if (blk >= total_blocks) return;  // the whole warp leaves together
  const float v = x[blk * 32 + lane];
  float amax = fabsf(v);
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) {
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
  }
  const Q8Scale sc = Q8ScaleFor(amax);
  const int qi = Q8Quantize(v, sc);
  if constexpr (kRoundTripF16) {
    // q * d(fp16) is exact in float (8 x 11 significant bits); one rounding to F16.
    out[blk * 32 + lane] = __float2half_rn(__fmul_rn(static_cast<float>(qi), Q8D(sc)));
  } else {
    int sum = qi;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    q[blk * 32 + lane] = static_cast<int8_t>(qi);
    if (lane == 0) {
      d[blk] = Q8D(sc);
      s[blk] = Q8S(sum, sc);
    }
  }
}

// One thread per weight block: decode, then write its 32 F16 values as four 16-byte stores
// (out is [rows][k] with k % 32 == 0, so block b starts at byte 64b: 16-byte aligned).
template <QuantType T>
__global__ void DequantizeToF16Kernel(const uint8_t* __restrict__ w, int64_t total_blocks,
                                      __half* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t blk = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       blk < total_blocks; blk += stride) {
    int32_t wq[8];
    float dw, mw;
    DecodeBlock<T>(w + blk * QuantBlock<T>::kBytes, wq, dw, mw);
    uint4 packed[4];
    auto* h2 = reinterpret_cast<__half2*>(packed);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float v[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const auto qv = static_cast<float>(static_cast<int8_t>((wq[j] >> (8 * i)) & 0xFF));
        v[i] = T == QuantType::kQ4_1 ? __fadd_rn(__fmul_rn(qv, dw), mw) : __fmul_rn(qv, dw);
      }
      // Elements 4j..4j+3 -> halves 4j..4j+3 (two __half2 each).
      h2[2 * j] = __floats2half2_rn(v[0], v[1]);
      h2[2 * j + 1] = __floats2half2_rn(v[2], v[3]);
    }
    auto* dst = reinterpret_cast<uint4*>(out + blk * 32);
#pragma unroll
    for (int i = 0; i < 4; ++i) dst[i] = packed[i];
  }
}

}  // namespace

int QuantBlockBytes(QuantType t) {
  switch (t) {
    case QuantType::kQ8_0:
      return QuantBlock<QuantType::kQ8_0>::kBytes;
    case QuantType::kQ4_0:
      return QuantBlock<QuantType::kQ4_0>::kBytes;
    case QuantType::kQ4_1:
      return QuantBlock<QuantType::kQ4_1>::kBytes;
  }
  return 0;
}

cudaError_t LaunchConvertToHalf(const float* x, int64_t count, HalfType type, void* out,
                                cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  auto* o = static_cast<uint16_t*>(out);
  int64_t done = 0;
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0) {
    const int64_t groups = count / 4;
    if (groups > 0) {
      const auto* x4 = reinterpret_cast<const float4*>(x);
      auto* o4 = static_cast<uint2*>(out);
      if (type == HalfType::kF16) {
        ConvertToHalfVec4Kernel<HalfType::kF16><<<GridFor(groups), kThreads, 0, stream>>>(
            x4, groups, o4);
      } else {
        ConvertToHalfVec4Kernel<HalfType::kBF16><<<GridFor(groups), kThreads, 0, stream>>>(
            x4, groups, o4);
      }
    }
    done = groups * 4;
  }
  const int64_t rest = count - done;  // the unaligned case, or the last count % 4 elements
  if (rest > 0) {
    if (type == HalfType::kF16) {
      ConvertToHalfKernel<HalfType::kF16><<<GridFor(rest), kThreads, 0, stream>>>(
          x + done, rest, o + done);
    } else {
      ConvertToHalfKernel<HalfType::kBF16><<<GridFor(rest), kThreads, 0, stream>>>(
          x + done, rest, o + done);
    }
  }
  return cudaGetLastError();
}

namespace {

// Grid for one warp per block; InvalidValue past the grid's x limit (2^31 - 1 CTAs, i.e. more
// than 5e11 elements).
cudaError_t QuantizeGrid(int64_t m, int64_t k, int64_t* total_blocks, int* ctas) {
  if (m < 0 || k < 0 || k % 32 != 0) return cudaErrorInvalidValue;
  *total_blocks = m * (k / 32);
  const int64_t c = (*total_blocks + kWarpsPerCta - 1) / kWarpsPerCta;
  if (c > 0x7FFFFFFF) return cudaErrorInvalidValue;
  *ctas = static_cast<int>(c);
  return cudaSuccess;
}

}  // namespace

cudaError_t LaunchQuantizeActivationsQ8(const float* x, int64_t m, int64_t k, int8_t* q, float* d,
                                        float* s, cudaStream_t stream) {
  int64_t total = 0;
  int ctas = 0;
  if (cudaError_t e = QuantizeGrid(m, k, &total, &ctas); e != cudaSuccess) return e;
  if (total == 0) return cudaSuccess;
  // A dependent launch: the CTAs may become resident while the GEMV before them drains.
  return LaunchDependent(QuantizeQ8Kernel<false>, ctas, kThreads, 0, stream, x, total, q, d, s,
                         static_cast<__half*>(nullptr));
}

cudaError_t LaunchQuantizeRoundTripF16(const float* x, int64_t m, int64_t k, void* out,
                                       cudaStream_t stream) {
  int64_t total = 0;
  int ctas = 0;
  if (cudaError_t e = QuantizeGrid(m, k, &total, &ctas); e != cudaSuccess) return e;
  if (total == 0) return cudaSuccess;
  return LaunchDependent(QuantizeQ8Kernel<true>, ctas, kThreads, 0, stream, x, total,
                         static_cast<int8_t*>(nullptr), static_cast<float*>(nullptr),
                         static_cast<float*>(nullptr), static_cast<__half*>(out));
}

cudaError_t LaunchDequantizeToF16(QuantType type, const void* w, int64_t rows, int64_t k, void* out,
                                  cudaStream_t stream) {
  if (rows < 0 || k < 0 || k % 32 != 0) return cudaErrorInvalidValue;
  const int64_t total = rows * (k / 32);
  if (total == 0) return cudaSuccess;
  const auto* wb = static_cast<const uint8_t*>(w);
  auto* o = static_cast<__half*>(out);
  switch (type) {
    case QuantType::kQ8_0:
      DequantizeToF16Kernel<QuantType::kQ8_0>
          <<<GridFor(total), kThreads, 0, stream>>>(wb, total, o);
      break;
    case QuantType::kQ4_0:
      DequantizeToF16Kernel<QuantType::kQ4_0>
          <<<GridFor(total), kThreads, 0, stream>>>(wb, total, o);
      break;
    case QuantType::kQ4_1:
      DequantizeToF16Kernel<QuantType::kQ4_1>
          <<<GridFor(total), kThreads, 0, stream>>>(wb, total, o);
      break;
  }
  return cudaGetLastError();
}

}  // namespace anvil::cuda
