// Reference matmul: for each activation row, convert it to the weight type's dot-product
// partner (F16/BF16 rounding, Q8_0 or Q8_1 quantization, as llama.cpp's vec_dot_type), then
// one dot product per weight row, summed in the order of llama.cpp's AVX512 CPU kernels so that
// F32, Q8_0, Q4_0 and Q4_1 results are bit-identical to llama.cpp's (F16/BF16 are not).
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/core/half.h"
#include "kernels/quantize.h"
#include "kernels/reference/ggml_sum_order.h"
#include "kernels/reference/reference.h"

namespace anvil::reference {
namespace {

// F32 weights: llama.cpp runs a matmul with >= 2 activation rows through llamafile's tinyBLAS
// when K % 16 == 0 and N % 4 == 0 (kGemm order), anything else through ggml_vec_dot_f32
// (kVecDot order); see ggml_sum_order.h.
ANVIL_FMA_CLONES float DotF32(const float* w, const float* x, int64_t k, GgmlF32Order order) {
  return GgmlDotF32(w, x, k, order);
}

// F16/BF16: both operands are 16-bit floats; products summed in double as ggml's scalar path.
float DotHalf(const uint16_t* w, const float* x_rounded, int64_t k, bool bf16) {
  double s = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    const float wf = bf16 ? Bf16ToFloat(w[i]) : HalfToFloat(w[i]);
    s += static_cast<double>(wf * x_rounded[i]);
  }
  return static_cast<float>(s);
}

// The quantized dot products reproduce the float arithmetic of llama.cpp's x86 kernels
// (ggml_vec_dot_{q8_0_q8_0,q4_0_q8_0,q4_1_q8_1} with AVX2/AVX512, and llamafile's tinyBLAS for
// Q8_0/Q4_0, which sums the same way), bit for bit (checked against the functions exported by
// llama-cpp-python's libggml-cpu.so over random rows). That matters more than it looks: llama.cpp
// re-quantizes every activation to 8 bits, so a 1-ulp difference in one output can flip a
// rounding in the next layer's quantizer and grow into visibly different logits.
//
// Their order, per output element:
//   * each 32-element block is unpacked to 32 bytes in element order (for 4-bit types, bytes
//     0..15 = low nibbles = elements 0..15, bytes 16..31 = high nibbles = elements 16..31);
//     the 8-bit activations come from QuantizeActivationQ8_0/Q8_1 (llama.cpp's x86 quantizer);
//   * 8 float lanes: lane i gets the exact integer sum of the 4 products of elements 4i..4i+3,
//     converted to float, and accumulates lane_i = fma(d_w * d_x, float(sum_i), lane_i)
//     over the blocks (d_w * d_x rounded to float first);
//   * the lanes are reduced as ((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7)) (hsum_float_8);
//   * Q4_1 adds the block offsets separately: summs += m_w * s_x per block (exact: both are
//     fp16, so the product fits a float; fused or not gives the same bits), result = hsum + summs;
//     Q4_0 folds its -8 into the integer products.
constexpr int kLanes = 8;

float HsumLanes(const float* l) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

// Adds one block to the lanes: lane i += d * (the exact integer sum of the products of elements
// 4i..4i+3), fused. prod: [32] integer products in element order. (Products first, then the
// four-term sums: about twice as fast as summing per lane straight from the bytes.)
inline void AccumulateBlock(const int32_t* prod, float d, float* lanes) {
  for (int i = 0; i < kLanes; ++i) {
    const int32_t sumi = prod[4 * i] + prod[4 * i + 1] + prod[4 * i + 2] + prod[4 * i + 3];
    lanes[i] = std::fma(d, static_cast<float>(sumi), lanes[i]);
  }
}

// The 32 products of one block of 4-bit weights minus `offset` (8 for Q4_0, 0 for Q4_1) with
// 8-bit activations: the low nibble of byte j is element j, its high nibble element 16 + j.
inline void NibbleProducts(const uint8_t* qs, int offset, const int8_t* x_q, int32_t* prod) {
  for (int j = 0; j < kQK / 2; ++j) {
    prod[j] = ((qs[j] & 0x0F) - offset) * x_q[j];
    prod[j + kQK / 2] = ((qs[j] >> 4) - offset) * x_q[j + kQK / 2];
  }
}

ANVIL_FMA_CLONES float DotQ8_0(const BlockQ8_0* w, const BlockQ8_0* x, int64_t nb) {
  float lanes[kLanes] = {};
  int32_t prod[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    for (int j = 0; j < kQK; ++j) prod[j] = w[b].qs[j] * x[b].qs[j];
    AccumulateBlock(prod, HalfToFloat(w[b].d) * HalfToFloat(x[b].d), lanes);
  }
  return HsumLanes(lanes);
}

ANVIL_FMA_CLONES float DotQ4_0(const BlockQ4_0* w, const BlockQ8_0* x, int64_t nb) {
  float lanes[kLanes] = {};
  int32_t prod[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    NibbleProducts(w[b].qs, 8, x[b].qs, prod);
    AccumulateBlock(prod, HalfToFloat(w[b].d) * HalfToFloat(x[b].d), lanes);
  }
  return HsumLanes(lanes);
}

ANVIL_FMA_CLONES float DotQ4_1(const BlockQ4_1* w, const BlockQ8_1* x, int64_t nb) {
  float lanes[kLanes] = {};
  float summs = 0.0f;
  int32_t prod[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    NibbleProducts(w[b].qs, 0, x[b].qs, prod);
    AccumulateBlock(prod, HalfToFloat(w[b].d) * HalfToFloat(x[b].d), lanes);
    summs += HalfToFloat(w[b].m) * HalfToFloat(x[b].s);
  }
  return HsumLanes(lanes) + summs;
}

// MatMulNumerics::kBlockSum: one fused chain per output over the blocks' exact integer sums,
// acc = fma(float(isum), d_w * d_x, acc), then for Q4_1 acc = fma(m_w, s_x, acc). No lanes, so
// the result does not depend on how the CPU tiles the rows.
ANVIL_FMA_CLONES float DotBlockSum(DType type, const uint8_t* w, const BlockQ8_0* x8,
                                   const BlockQ8_1* x81, int64_t nb) {
  float acc = 0.0f;
  int32_t prod[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    float dw = 0.0f, dx = 0.0f;
    switch (type) {
      case DType::kQ8_0: {
        const auto& blk = reinterpret_cast<const BlockQ8_0*>(w)[b];
        for (int j = 0; j < kQK; ++j) prod[j] = blk.qs[j] * x8[b].qs[j];
        dw = HalfToFloat(blk.d);
        dx = HalfToFloat(x8[b].d);
        break;
      }
      case DType::kQ4_0: {
        const auto& blk = reinterpret_cast<const BlockQ4_0*>(w)[b];
        NibbleProducts(blk.qs, 8, x8[b].qs, prod);
        dw = HalfToFloat(blk.d);
        dx = HalfToFloat(x8[b].d);
        break;
      }
      default: {  // Q4_1
        const auto& blk = reinterpret_cast<const BlockQ4_1*>(w)[b];
        NibbleProducts(blk.qs, 0, x81[b].qs, prod);
        dw = HalfToFloat(blk.d);
        dx = HalfToFloat(x81[b].d);
        break;
      }
    }
    int32_t isum = 0;
    for (int j = 0; j < kQK; ++j) isum += prod[j];
    acc = std::fma(static_cast<float>(isum), dw * dx, acc);
    if (type == DType::kQ4_1) {
      const auto& blk = reinterpret_cast<const BlockQ4_1*>(w)[b];
      acc = std::fma(HalfToFloat(blk.m), HalfToFloat(x81[b].s), acc);
    }
  }
  return acc;
}

}  // namespace

absl::Status MatMul(const MatMulArgs& a, MatMulNumerics numerics) {
  if (a.w == nullptr || a.x == nullptr || a.y == nullptr || a.m < 0 || a.n < 0 || a.k < 0) {
    return absl::InvalidArgumentError("matmul: null pointer or negative shape");
  }
  if (a.k % BlockElems(a.w_type) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("matmul: K=", a.k, " is not a multiple of the ",
                                              DTypeName(a.w_type), " block size"));
  }
  const int64_t row_bytes = a.k / BlockElems(a.w_type) * BlockBytes(a.w_type);
  const int64_t nb = a.k / kQK;
  const auto* wbytes = static_cast<const uint8_t*>(a.w);
  std::vector<float> xr(static_cast<size_t>(a.k));
  std::vector<BlockQ8_0> x8(static_cast<size_t>(nb));
  std::vector<BlockQ8_1> x81(static_cast<size_t>(nb));
  const bool block_sum = numerics == MatMulNumerics::kBlockSum;
  const bool tiny_blas = !block_sum && a.m >= 2 && a.k % 16 == 0 && a.n % 4 == 0;
  const auto f32_order = tiny_blas ? GgmlF32Order::kGemm : GgmlF32Order::kVecDot;
  for (int64_t i = 0; i < a.m; ++i) {
    const float* x = a.x + i * a.k;
    switch (a.w_type) {
      case DType::kF16:
        for (int64_t j = 0; j < a.k; ++j) xr[j] = HalfToFloat(FloatToHalf(x[j]));
        break;
      case DType::kBF16:
        for (int64_t j = 0; j < a.k; ++j) xr[j] = Bf16ToFloat(FloatToBf16(x[j]));
        break;
      case DType::kQ8_0:
      case DType::kQ4_0:
        QuantizeActivationQ8_0(x, x8.data(), a.k);
        break;
      case DType::kQ4_1:
        QuantizeActivationQ8_1(x, x81.data(), a.k);
        break;
      case DType::kF32:
        break;
    }
    for (int64_t n = 0; n < a.n; ++n) {
      const uint8_t* w = wbytes + n * row_bytes;
      float r = 0.0f;
      if (block_sum && BlockElems(a.w_type) != 1) {
        a.y[i * a.n + n] = DotBlockSum(a.w_type, w, x8.data(), x81.data(), nb);
        continue;
      }
      switch (a.w_type) {
        case DType::kF32:
          r = DotF32(reinterpret_cast<const float*>(w), x, a.k, f32_order);
          break;
        case DType::kF16:
          r = DotHalf(reinterpret_cast<const uint16_t*>(w), xr.data(), a.k, false);
          break;
        case DType::kBF16:
          r = DotHalf(reinterpret_cast<const uint16_t*>(w), xr.data(), a.k, true);
          break;
        case DType::kQ8_0:
          r = DotQ8_0(reinterpret_cast<const BlockQ8_0*>(w), x8.data(), nb);
          break;
        case DType::kQ4_0:
          r = DotQ4_0(reinterpret_cast<const BlockQ4_0*>(w), x8.data(), nb);
          break;
        case DType::kQ4_1:
          r = DotQ4_1(reinterpret_cast<const BlockQ4_1*>(w), x81.data(), nb);
          break;
      }
      a.y[i * a.n + n] = r;
    }
  }
  return absl::OkStatus();
}

}  // namespace anvil::reference
