// Row quantizers and dequantizers for the block types in dtype.h, with llama.cpp's reference
// rounding (ggml-quants.c *_ref; see shared/specs/llama-gguf-notes.md §1.8, §6). Weights use
// Q8_0/Q4_0/Q4_1; activations use Q8_0/Q8_1 (what quantized dot products consume).
#ifndef ANVIL_KERNELS_QUANTIZE_H_
#define ANVIL_KERNELS_QUANTIZE_H_

#include <cstdint>

#include "kernels/dtype.h"

namespace anvil {

// x: [k] with k % 32 == 0 -> y: [k/32] blocks. Weight quantizers (ggml's *_ref rounding).
void QuantizeRowQ8_0(const float* x, BlockQ8_0* y, int64_t k);
void QuantizeRowQ4_0(const float* x, BlockQ4_0* y, int64_t k);
void QuantizeRowQ4_1(const float* x, BlockQ4_1* y, int64_t k);

// Activation quantizers, as llama.cpp's x86 CPU backend quantizes a matmul's right-hand side
// (multiply by 127/amax, round half to even): what quantized dot products consume.
void QuantizeActivationQ8_0(const float* x, BlockQ8_0* y, int64_t k);
void QuantizeActivationQ8_1(const float* x, BlockQ8_1* y, int64_t k);

// One row of `k` elements of type `t` (raw bytes, RowBytes(t, k) long) -> y: [k] floats.
void DequantizeRow(DType t, const void* x, float* y, int64_t k);

}  // namespace anvil

#endif  // ANVIL_KERNELS_QUANTIZE_H_
