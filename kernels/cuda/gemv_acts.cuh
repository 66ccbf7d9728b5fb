// The quantized GEMV's activations (matmul_quant.cu): where a pass finds them (GemvActs), and
// the fused kernel's own quantization of x into shared memory, staged with asynchronous
// copies, in a layout whose 16-byte reads are conflict-free across a warp.
#ifndef ANVIL_KERNELS_CUDA_GEMV_ACTS_CUH_
#define ANVIL_KERNELS_CUDA_GEMV_ACTS_CUH_

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/quant_blocks.cuh"

namespace anvil::cuda {
namespace gemv {

constexpr int kThreads = 256;      // per CTA
constexpr int kTileBytes = 16384;  // one weight-tile buffer (the kernel has two)

}  // namespace gemv

// The activations of one pass: quantized (xq [kM][nb*32] int8, xd and xs [kM][nb], from
// LaunchQuantizeActivationsQ8) for the two-kernel path, or x [kM][nb*32] float (16-byte
// aligned) for the fused one.
struct GemvActs {
  const int8_t* xq;
  const float* xd;
  const float* xs;
  const float* x;
};

// Bytes of the fused kernel's dynamic shared memory for `rows` activation rows of nb blocks:
// the quant halves (32 bytes a block), then d and s (4 bytes each a block).
constexpr int64_t FusedActBytes(int64_t rows, int64_t nb) { return rows * nb * 40; }

// The fused kernel's quantization of blocks [begin, end) of the pass's activations into shared
// memory `s`, reading them from `x` (the staged copy in shared memory, starting at block
// begin). Block j (j = row * nb + block) goes to: quant bytes 0-15 at s + 16j, bytes 16-31 at
// s + 16 (kM*nb + j), then d [kM*nb] and s [kM*nb] floats. Eight lanes per block, four elements
// each (one 16-byte load); the block's max and sum are reduced over its eight lanes (max and
// integer sums: any order gives the same result as convert.cu's warp-per-block kernel).
template <int kM>
__device__ __forceinline__ void QuantizeToShared(const float* x, int nb, int begin, int end,
                                                 uint8_t* s) {
  const int tid = static_cast<int>(threadIdx.x);
  const int g = tid & 7;  // this lane's elements: 4g .. 4g + 3 of the block
  const int total = kM * nb;
  auto* sd = reinterpret_cast<float*>(s + static_cast<size_t>(total) * 32);
  float* ss = sd + total;
  // The loop bound is uniform across each warp (the shuffles need all 32 lanes).
  for (int base = begin + (tid >> 5) * 4; base < end; base += gemv::kThreads / 8) {
    const int blk = base + ((tid & 31) >> 3);
    const bool active = blk < end;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (active) v = *reinterpret_cast<const float4*>(x + (blk - begin) * 32 + 4 * g);
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
    for (int off = 4; off > 0; off >>= 1) {
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    }
    const Q8Scale sc = Q8ScaleFor(amax);
    const int q0 = Q8Quantize(v.x, sc), q1 = Q8Quantize(v.y, sc);
    const int q2 = Q8Quantize(v.z, sc), q3 = Q8Quantize(v.w, sc);
    int sum = q0 + q1 + q2 + q3;
#pragma unroll
    for (int off = 4; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (active) {
      const uint32_t packed = (static_cast<uint32_t>(q0) & 0xFFu) |
                              ((static_cast<uint32_t>(q1) & 0xFFu) << 8) |
                              ((static_cast<uint32_t>(q2) & 0xFFu) << 16) |
                              (static_cast<uint32_t>(q3) << 24);
      const int64_t off = g < 4 ? static_cast<int64_t>(blk) * 16 + 4 * g
                                : static_cast<int64_t>(total + blk) * 16 + 4 * (g - 4);
      *reinterpret_cast<uint32_t*>(s + off) = packed;
      if (g == 0) {
        sd[blk] = Q8D(sc);
        ss[blk] = Q8S(sum, sc);
      }
    }
  }
}

// 16 bytes global -> shared without passing through registers (cp.async, sm_80+).
__device__ __forceinline__ void CopyAsync16(void* smem, const void* gmem) {
  const auto dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(gmem) : "memory");
}

__device__ __forceinline__ void WaitCopiesAsync() {
  asm volatile("cp.async.commit_group;" ::: "memory");
  asm volatile("cp.async.wait_group 0;" ::: "memory");
}

// The fused kernel's activations: x [kM][nb*32] float (16-byte aligned) is staged through
// `stage` (the two weight-tile buffers, free until the first tile is stored: 32 KB) with
// asynchronous copies, all of a chunk in flight at once, then quantized from shared memory
// into `s`. A long x takes a few chunks; quantizing straight from global memory waited for
// one load's latency per 32 blocks per warp, which made long rows slower than two kernels.
template <int kM>
__device__ __forceinline__ void StageAndQuantize(const float* __restrict__ x, int nb,
                                                 uint8_t* stage, uint8_t* s) {
  constexpr int kStageBlocks = 2 * gemv::kTileBytes / 128;  // 32 floats = 128 bytes a block
  const int total = kM * nb;
  const int tid = static_cast<int>(threadIdx.x);
  auto* staged = reinterpret_cast<float*>(stage);
  for (int b0 = 0; b0 < total; b0 += kStageBlocks) {
    const int b1 = min(total, b0 + kStageBlocks);
    const int chunks = (b1 - b0) * 8;  // 16-byte pieces
    const float* src = x + static_cast<int64_t>(b0) * 32;
    for (int c = tid; c < chunks; c += gemv::kThreads) CopyAsync16(staged + 4 * c, src + 4 * c);
    WaitCopiesAsync();
    __syncthreads();
    QuantizeToShared<kM>(staged, nb, b0, b1, s);
    __syncthreads();  // the stage is read before the next chunk (or the first tile) lands
  }
}

// Activation block xb of row i: its 32 quant bytes (elements 0-15 in lo, 16-31 in hi), d, and
// s when kWantS (Q4_1's minimum term; 0 otherwise).
template <int kM, bool kFused, bool kWantS>
__device__ __forceinline__ void LoadActBlock(const GemvActs& a, const uint8_t* act_smem, int nb,
                                             int i, int64_t xb, int4& lo, int4& hi, float& d,
                                             float& s) {
  if constexpr (kFused) {
    const int64_t j = static_cast<int64_t>(i) * nb + xb;
    lo = *reinterpret_cast<const int4*>(act_smem + j * 16);
    hi = *reinterpret_cast<const int4*>(act_smem + (static_cast<int64_t>(kM) * nb + j) * 16);
    const auto* sd = reinterpret_cast<const float*>(act_smem + static_cast<int64_t>(kM) * nb * 32);
    d = sd[j];
    s = kWantS ? sd[static_cast<int64_t>(kM) * nb + j] : 0.0f;
  } else {
    const auto* xp = reinterpret_cast<const int4*>(a.xq + (static_cast<int64_t>(i) * nb + xb) * 32);
    lo = __ldg(xp);
    hi = __ldg(xp + 1);
    d = __ldg(a.xd + static_cast<int64_t>(i) * nb + xb);
    s = kWantS ? __ldg(a.xs + static_cast<int64_t>(i) * nb + xb) : 0.0f;
  }
}

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_GEMV_ACTS_CUH_
