// The block-sum order (MatMulNumerics::kBlockSum) without AVX-512: plain loops over the prepared
// activations, one output at a time, bit-identical to reference::MatMul in that order and to
// the AVX-512 tile (matmul_blocksum_avx512.cc). Slow; it exists so that the order is available
// on every CPU that runs the CPU backend (and under ANVIL_NO_AVX512, which the tests use).
#include <cmath>
#include <cstdint>

#include "kernels/core/half.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/dtype.h"

namespace anvil::cpu {
namespace {

// Block b's exact integer dot product, its weight scale and (Q4_1) minimum.
int32_t BlockDot(DType type, const uint8_t* w, int64_t b, const int8_t* x, float* dw, float* mw) {
  int32_t isum = 0;
  if (type == DType::kQ8_0) {
    const auto& blk = reinterpret_cast<const BlockQ8_0*>(w)[b];
    for (int j = 0; j < kQK; ++j) isum += blk.qs[j] * x[j];
    *dw = HalfToFloat(blk.d);
    return isum;
  }
  const uint8_t* qs = nullptr;
  int offset = 0;
  if (type == DType::kQ4_0) {
    const auto& blk = reinterpret_cast<const BlockQ4_0*>(w)[b];
    qs = blk.qs;
    offset = 8;
    *dw = HalfToFloat(blk.d);
  } else {
    const auto& blk = reinterpret_cast<const BlockQ4_1*>(w)[b];
    qs = blk.qs;
    *dw = HalfToFloat(blk.d);
    *mw = HalfToFloat(blk.m);
  }
  for (int j = 0; j < kQK / 2; ++j) {
    isum += ((qs[j] & 0x0F) - offset) * x[j] + ((qs[j] >> 4) - offset) * x[j + kQK / 2];
  }
  return isum;
}

}  // namespace

void MatMulBlockSumPortable(DType type, const TileArgs& t) {
  const PreparedActs& x = *t.x;
  const int64_t nb = x.nb;
  for (int64_t m = t.m0; m < t.m1; ++m) {
    for (int64_t n = t.n0; n < t.n1; ++n) {
      const uint8_t* w = t.w + n * t.row_bytes;
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        float dw = 0.0f, mw = 0.0f;
        const int32_t isum = BlockDot(type, w, b, x.qs + m * x.k + b * kQK, &dw, &mw);
        acc = std::fma(static_cast<float>(isum), dw * x.d[m * nb + b], acc);
        if (type == DType::kQ4_1) acc = std::fma(mw, x.s[m * nb + b], acc);
      }
      t.y[m * t.ldy + n] = acc;
    }
  }
}

}  // namespace anvil::cpu
