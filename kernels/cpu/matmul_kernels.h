// Internal to the CPU matmul (matmul.cc): the activation rows prepared once per call, and the
// per-weight-type tile kernels that matmul.cc spreads over the thread pool. A tile kernel computes
// y[m][n] for a rectangle of (weight rows n, activation rows m) and owns its register blocking.
#ifndef ANVIL_KERNELS_CPU_MATMUL_KERNELS_H_
#define ANVIL_KERNELS_CPU_MATMUL_KERNELS_H_

#include <cstdint>

#include "kernels/dtype.h"

namespace anvil::cpu {

// Activations converted to what the weight type's dot product consumes (llama.cpp's
// vec_dot_type). K = k, nb = k / 32.
struct PreparedActs {
  // Quantized weights (Q8_0/Q4_0: x as Q8_0; Q4_1: x as Q8_1), split out of the block format
  // so that each row's int8 values are contiguous and 32-byte aligned.
  const int8_t* qs = nullptr;  // [M][K]
  const float* d = nullptr;    // [M][nb] block scales, fp16-rounded exactly as the block stores
  const float* s = nullptr;    // [M][nb] Q8_1 block sum terms (Q4_1 only; else null)
  // Float weights: x itself (F32), or x rounded to F16/BF16 and widened back (F16/BF16).
  const float* f = nullptr;  // [M][K]
  int64_t k = 0;
  int64_t nb = 0;
  // The AVX-512 prefill tile only (set when it will run): the quantized rows again, in groups
  // of kActGroupRows (a short last group repeats its last row), made once per call by
  // InterleaveActGroupsAvx512. Per (group, block): 2 x 64 bytes, rows (0, 1) then (2, 3) with
  // their 4-byte groups interleaved (Q8_0 weights: each byte xor 0x80); 16 floats of scales,
  // lane 4i + j = row j's d (and s for Q4_1).
  const uint8_t* group_qs = nullptr;  // [groups][nb][128]
  const float* group_d = nullptr;     // [groups][nb][16]
  const float* group_s = nullptr;     // [groups][nb][16] (Q4_1 only; else null)
  // The block-sum tile only, signed weight types (Q8_0/Q4_0): qs ^ 0x80, i.e. x + 128 unsigned.
  const uint8_t* qs_u8 = nullptr;  // [M][K]
};

inline constexpr int kActGroupRows = 4;

// One rectangle of the output: rows [m0, m1) of x against weight rows [n0, n1).
struct TileArgs {
  const uint8_t* w = nullptr;  // weight row 0; row n starts at w + n * row_bytes
  int64_t row_bytes = 0;
  const PreparedActs* x = nullptr;
  float* y = nullptr;  // [M][ldy]
  int64_t ldy = 0;
  int64_t n0 = 0, n1 = 0, m0 = 0, m1 = 0;
  int64_t n_total = 0;  // N: rows past n1 may be prefetched, rows past N never
  // F32 only: llama.cpp's tinyBLAS order (one 16-lane accumulator) rather than its vec_dot order
  // (four); the reference picks it when M >= 2, K % 16 == 0 and N % 4 == 0.
  bool f32_gemm_order = false;
};

// Q8_0 / Q4_0 / Q4_1 weights against Q8_0 / Q8_0 / Q8_1 activations: one activation row
// (matmul_quant_gemv_avx2.cc) or several (matmul_quant_gemm_avx2.cc). Bit-identical to the
// reference.
void MatMulGemvQuantAvx2(DType type, const TileArgs& t);
void MatMulGemmQuantAvx2(DType type, const TileArgs& t);
// The same GEMV and GEMM tiles with AVX-VNNI's vpdpbusd (matmul_quant_gem{v,m}_vnni.cc); same
// bits. Only when HasAvxVnni() (CPUID leaf 7 subleaf 1, EAX bit 4; checked once).
void MatMulGemvQuantVnni(DType type, const TileArgs& t);
void MatMulGemmQuantVnni(DType type, const TileArgs& t);
bool HasAvxVnni();
// The prefill tile with AVX-512 VNNI (matmul_quant_gemm_avx512.cc), same bits; needs the
// grouped activations above. Only when HasAvx512Vnni() (CPUID leaf 7: AVX512F/DQ/BW/VL and
// VNNI, with the OS saving zmm state; ANVIL_NO_AVX512 in the environment turns it off).
void MatMulGemmQuantAvx512(DType type, const TileArgs& t);
void InterleaveActGroupsAvx512(DType type, const PreparedActs& x, int64_t m, int64_t g0,
                               int64_t g1, uint8_t* group_qs, float* group_d, float* group_s);
bool HasAvx512Vnni();
// MatMulNumerics::kBlockSum for Q8_0 / Q4_0 / Q4_1 weights, any number of activation rows:
// with AVX-512 VNNI (matmul_blocksum_avx512.cc; needs PreparedActs::qs_u8 for Q8_0/Q4_0), and
// in plain loops (matmul_blocksum.cc). Both bit-identical to the reference in that order.
// With AMX-INT8 (HasAmxInt8(): CPUID AMX-TILE/INT8 and Linux's permission for the tile state;
// ANVIL_NO_AMX turns it off) groups of 16 activation rows take their block sums from one tile
// product instead of 8 vpdpbusd per row; the same bits.
void MatMulBlockSumAvx512(DType type, const TileArgs& t);
bool HasAmxInt8();
// AMX-TILE and the AMX feature in CPUID leaf 7 EDX bit `edx_feature_bit` (25: INT8, 22: BF16),
// AVX-512 VNNI, no ANVIL_NO_AMX, and Linux's permission for the tile state (asked for here).
bool HasAmx(unsigned edx_feature_bit);
void MatMulBlockSumPortable(DType type, const TileArgs& t);
// F32 weights (matmul_f32_avx2.cc) and F16 / BF16 weights (matmul_half_avx2.cc) against float
// activations. F32 is bit-identical to the reference in both of its summation orders
// (TileArgs::f32_gemm_order); F16/BF16 are within tolerance.
void MatMulTileF32Avx2(const TileArgs& t);
void MatMulTileF16Avx2(const TileArgs& t);
void MatMulTileBf16Avx2(const TileArgs& t);

// Activation preparation (quantize_avx2.cc), one row of k elements (k % 32 == 0 for the
// quantizers). Results are bit-identical to QuantizeActivationQ8_0 / QuantizeActivationQ8_1 in
// kernels/quantize.h: qs equal, d[b] == HalfToFloat(block.d), s[b] == HalfToFloat(block.s).
void QuantizeActsQ8_0(const float* x, int64_t k, int8_t* qs, float* d);
void QuantizeActsQ8_1(const float* x, int64_t k, int8_t* qs, float* d, float* s);
// x rounded to F16 (round to nearest even) or BF16 and widened back to float.
void RoundActsF16(const float* x, int64_t k, float* out);
void RoundActsBf16(const float* x, int64_t k, float* out);

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_MATMUL_KERNELS_H_
