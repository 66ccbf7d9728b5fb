// Element types of weight tensors the kernels compute with, and their block layouts
// (ggml-compatible: the bytes are the ones stored in GGUF files). Quantized types store
// blocks of 32 elements along a row; a row of K elements is K/32 blocks.
#ifndef ANVIL_KERNELS_DTYPE_H_
#define ANVIL_KERNELS_DTYPE_H_

#include <cstdint>

#include "absl/status/statusor.h"

namespace anvil {

enum class DType : uint8_t { kF32, kF16, kBF16, kQ8_0, kQ4_0, kQ4_1 };

inline constexpr int kQK = 32;  // elements per block of the 32-block quant types

// Block layouts (little-endian fields, fp16 scales stored as raw bits).
struct BlockQ8_0 {
  uint16_t d;      // scale (fp16)
  int8_t qs[kQK];  // x = qs * d
};
struct BlockQ4_0 {
  uint16_t d;          // scale (fp16)
  uint8_t qs[kQK / 2]; // low nibble of byte j: element j; high nibble: element j+16; x = (q-8)*d
};
struct BlockQ4_1 {
  uint16_t d;          // scale (fp16)
  uint16_t m;          // minimum (fp16)
  uint8_t qs[kQK / 2]; // as Q4_0; x = q*d + m
};
// Activations only (what a Q4_1 dot product consumes): s = d * sum(qs).
struct BlockQ8_1 {
  uint16_t d;
  uint16_t s;
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ8_1) == 36);

// Elements per block (1 for plain float types).
int64_t BlockElems(DType t);
// Bytes per block.
int64_t BlockBytes(DType t);
const char* DTypeName(DType t);
// Bytes of one row of `n` elements; InvalidArgument if n is negative or not a multiple of the
// block size, or the size overflows.
absl::StatusOr<int64_t> RowBytes(DType t, int64_t n);

}  // namespace anvil

#endif  // ANVIL_KERNELS_DTYPE_H_
