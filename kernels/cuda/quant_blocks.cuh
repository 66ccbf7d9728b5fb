// Device-side decoding of the 32-element weight blocks (layouts in kernels/dtype.h), shared by
// the quantized GEMV (matmul_quant.cu) and the dequantizer (convert.cu). Blocks are 2-byte
// aligned only (34- and 18-byte blocks follow one another), so every field is read as uint16
// halves and reassembled; no wider load ever touches block data here.
#ifndef ANVIL_KERNELS_CUDA_QUANT_BLOCKS_CUH_
#define ANVIL_KERNELS_CUDA_QUANT_BLOCKS_CUH_

#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/launch_matmul.h"

namespace anvil::cuda {

template <QuantType T>
struct QuantBlock;
// Byte offsets of the fields: the fp16 scale d, the fp16 minimum m (Q4_1 only), the quants.
template <>
struct QuantBlock<QuantType::kQ8_0> {
  static constexpr int kBytes = 34, kQsOffset = 2;
};
template <>
struct QuantBlock<QuantType::kQ4_0> {
  static constexpr int kBytes = 18, kQsOffset = 2;
};
template <>
struct QuantBlock<QuantType::kQ4_1> {
  static constexpr int kBytes = 20, kQsOffset = 4;
};

__device__ __forceinline__ float HalfBitsToFloat(uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

// 4 bytes at a 2-byte-aligned address (little-endian), as two 16-bit loads.
__device__ __forceinline__ uint32_t LoadU32Align2(const uint16_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 16);
}

// Decodes the block at `p` (2-byte aligned, any memory space) into wq[8]: word j holds the
// signed 8-bit weights of elements 4j..4j+3 (byte i = element 4j+i), ready for __dp4a against
// the activation bytes in the same order. Q4_0's nibbles come out as q-8 in [-8, 7]; Q4_1's as
// q in [0, 15] with the minimum returned in `m` (0 for the other types).
template <QuantType T>
__device__ __forceinline__ void DecodeBlock(const uint8_t* p, int32_t (&wq)[8], float& d,
                                            float& m) {
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  d = HalfBitsToFloat(h[0]);
  m = 0.0f;
  constexpr int kQs = QuantBlock<T>::kQsOffset / 2;  // in uint16 units
  if constexpr (T == QuantType::kQ8_0) {
#pragma unroll
    for (int j = 0; j < 8; ++j) wq[j] = static_cast<int32_t>(LoadU32Align2(h + kQs + 2 * j));
  } else {
    if constexpr (T == QuantType::kQ4_1) m = HalfBitsToFloat(h[1]);
      // Byte i of the 16 quant bytes: low nibble = element i, high nibble = element 16 + i.
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t raw = LoadU32Align2(h + kQs + 2 * j);
      uint32_t lo = raw & 0x0F0F0F0Fu, hi = (raw >> 4) & 0x0F0F0F0Fu;
      if constexpr (T == QuantType::kQ4_0) {
        lo = __vsub4(lo, 0x08080808u);  // per-byte wrap-around: 0..15 - 8 -> int8 -8..7
        hi = __vsub4(hi, 0x08080808u);
      }
      wq[j] = static_cast<int32_t>(lo);
      wq[j + 4] = static_cast<int32_t>(hi);
    }
  }
}

// DecodeBlock for a block in a buffer with at least 4 bytes of slack after it (the GEMV's
// shared-memory tiles): the quant words are assembled from 32-bit loads at the 4-byte-aligned
// addresses around them (one more word than needed, hence the slack) with funnel shifts, half
// the loads of the 16-bit path and no divergence between aligned and unaligned blocks.
template <QuantType T>
__device__ __forceinline__ void DecodeBlockPadded(const uint8_t* p, int32_t (&wq)[8], float& d,
                                                  float& m) {
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  d = HalfBitsToFloat(h[0]);
  m = 0.0f;
  if constexpr (T == QuantType::kQ4_1) m = HalfBitsToFloat(h[1]);
  constexpr int kQsBytes = T == QuantType::kQ8_0 ? 32 : 16;
  constexpr int kWords = kQsBytes / 4;
  const uint8_t* qs = p + QuantBlock<T>::kQsOffset;
  const unsigned shift = static_cast<unsigned>(reinterpret_cast<uintptr_t>(qs) & 3) * 8;  // 0, 16
  const auto* base = reinterpret_cast<const uint32_t*>(qs - shift / 8);
  uint32_t raw[kWords + 1];
#pragma unroll
  for (int j = 0; j <= kWords; ++j) raw[j] = base[j];
#pragma unroll
  for (int j = 0; j < kWords; ++j) {
    const uint32_t v = __funnelshift_r(raw[j], raw[j + 1], shift);
    if constexpr (T == QuantType::kQ8_0) {
      wq[j] = static_cast<int32_t>(v);
    } else {
      uint32_t lo = v & 0x0F0F0F0Fu, hi = (v >> 4) & 0x0F0F0F0Fu;
      if constexpr (T == QuantType::kQ4_0) {
        lo = __vsub4(lo, 0x08080808u);
        hi = __vsub4(hi, 0x08080808u);
      }
      wq[j] = static_cast<int32_t>(lo);
      wq[j + 4] = static_cast<int32_t>(hi);
    }
  }
}

// The activation side: one 32-element block of x quantized to 8 bits the way the reference's
// QuantizeActivationQ8_0/Q8_1 do it, operation for operation (IEEE division, one rounding
// multiply, round half to even, d and s rounded through fp16), so that every kernel that
// quantizes activations (convert.cu, the fused GEMV in matmul_quant.cu) matches it bit for bit.
struct Q8Scale {
  float id;     // 127 / amax, or 0 for an all-zero block
  float scale;  // amax / 127, before rounding to fp16
};

__device__ __forceinline__ Q8Scale Q8ScaleFor(float amax) {
  return {amax != 0.0f ? 127.0f / amax : 0.0f, amax / 127.0f};
}

// |v * id| <= 127 after rounding, so the result fits int8.
__device__ __forceinline__ int Q8Quantize(float v, const Q8Scale& s) {
  return __float2int_rn(__fmul_rn(v, s.id));
}

// The block's d, rounded through fp16 and widened.
__device__ __forceinline__ float Q8D(const Q8Scale& s) {
  return __half2float(__float2half_rn(s.scale));
}

// Q8_1's s = d * sum(q) (with the unrounded d, as the reference), rounded through fp16.
__device__ __forceinline__ float Q8S(int sum, const Q8Scale& s) {
  return __half2float(__float2half_rn(__fmul_rn(static_cast<float>(sum), s.scale)));
}

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_QUANT_BLOCKS_CUH_
