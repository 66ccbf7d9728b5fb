// Vectorized row dequantization for the CPU backend (GetRows), bit-identical to DequantizeRow in
// kernels/quantize.h: the same multiplies and adds, in the same order, without fusing.
#ifndef ANVIL_KERNELS_CPU_DEQUANTIZE_AVX2_H_
#define ANVIL_KERNELS_CPU_DEQUANTIZE_AVX2_H_

#include <cstdint>

#include "kernels/dtype.h"

namespace anvil::cpu {

// One row of `k` elements of type `t` (RowBytes(t, k) bytes at `x`) -> y: [k] floats.
void DequantizeRowAvx2(DType t, const void* x, float* y, int64_t k);

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_DEQUANTIZE_AVX2_H_
