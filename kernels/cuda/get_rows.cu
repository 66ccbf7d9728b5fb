// Embedding lookup on the GPU: one block per token, each thread dequantizing elements of the
// token's table row exactly as the reference's DequantizeRow does (kernels/reference/
// quantize.cc): halves widen exactly, q*d and q*d + m are rounded per operation, so the rows are
// the reference's bits. Quantized blocks are only 2-byte aligned (34, 18 and 20 bytes), so their
// fields are read as uint16/bytes. Token ids are checked here, on the device: a bad id lowers
// *bad_pos to its position and its output row is zero-filled, never read out of the table.
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/cuda/launch_ops.h"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;
// The values of anvil::DType (kernels/dtype.h), which this file cannot include.
enum : int { kF32 = 0, kF16 = 1, kBF16 = 2, kQ8_0 = 3, kQ4_0 = 4, kQ4_1 = 5 };
constexpr int kQK = 32;

__device__ __forceinline__ float HalfBitsToFloat(uint16_t h) {
  return __half2float(__ushort_as_half(h));
}

__device__ __forceinline__ float Bf16BitsToFloat(uint16_t h) {
  return __uint_as_float(static_cast<uint32_t>(h) << 16);
}

// Element i of a row of type `dtype` starting at `row` (raw bytes).
__device__ __forceinline__ float DequantizeOne(int dtype, const uint8_t* row, int i) {
  switch (dtype) {
    case kF32:
      return reinterpret_cast<const float*>(row)[i];
    case kF16:
      return HalfBitsToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
    case kBF16:
      return Bf16BitsToFloat(reinterpret_cast<const uint16_t*>(row)[i]);
    case kQ8_0: {  // 34-byte blocks: d (fp16), qs[32] int8; x = qs * d
      const uint8_t* b = row + (i / kQK) * 34;
      const float d = HalfBitsToFloat(*reinterpret_cast<const uint16_t*>(b));
      const int8_t q = static_cast<int8_t>(b[2 + i % kQK]);
      return __fmul_rn(static_cast<float>(q), d);
    }
    case kQ4_0: {  // 18-byte blocks: d, qs[16]; element j < 16 low nibble of qs[j], else high
      const uint8_t* b = row + (i / kQK) * 18;
      const float d = HalfBitsToFloat(*reinterpret_cast<const uint16_t*>(b));
      const int j = i % kQK;
      const uint8_t byte = b[2 + (j & 15)];
      const int q = (j < 16 ? (byte & 0x0F) : (byte >> 4)) - 8;
      return __fmul_rn(static_cast<float>(q), d);
    }
    case kQ4_1: {  // 20-byte blocks: d, m, qs[16]; x = q * d + m
      const uint8_t* b = row + (i / kQK) * 20;
      const float d = HalfBitsToFloat(*reinterpret_cast<const uint16_t*>(b));
      const float m = HalfBitsToFloat(*reinterpret_cast<const uint16_t*>(b + 2));
      const int j = i % kQK;
      const uint8_t byte = b[4 + (j & 15)];
      const int q = j < 16 ? (byte & 0x0F) : (byte >> 4);
      return __fadd_rn(__fmul_rn(static_cast<float>(q), d), m);
    }
    default:
      return 0.0f;
  }
}

// table: [v] rows of row_bytes; ids: [t]; out: [t][c].
__global__ void GetRowsKernel(int dtype, const uint8_t* table, int64_t row_bytes,
                              const int32_t* ids, float* out, int64_t v, int c,
                              unsigned* bad_pos) {
  const int64_t tok = blockIdx.x;
  const int32_t id = ids[tok];
  float* o = out + tok * c;
  if (id < 0 || id >= v) {
    if (threadIdx.x == 0) atomicMin(bad_pos, static_cast<unsigned>(tok));
    for (int i = threadIdx.x; i < c; i += blockDim.x) o[i] = 0.0f;
    return;
  }
  const uint8_t* row = table + static_cast<int64_t>(id) * row_bytes;
  for (int i = threadIdx.x; i < c; i += blockDim.x) o[i] = DequantizeOne(dtype, row, i);
}

}  // namespace

cudaError_t LaunchGetRows(int dtype, const void* table, int64_t row_bytes, const int32_t* ids,
                          float* out, int64_t t, int64_t v, int64_t c, unsigned* bad_pos,
                          cudaStream_t stream) {
  GetRowsKernel<<<static_cast<unsigned>(t), kThreads, 0, stream>>>(
      dtype, static_cast<const uint8_t*>(table), row_bytes, ids, out, v, static_cast<int>(c),
      bad_pos);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
