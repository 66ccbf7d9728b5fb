// Decode matmul (one activation row) for Q8_0, Q4_0 and Q4_1 weights: the AVX2 build of the
// tile in matmul_quant_gemv_impl.h, or the AVX-VNNI build (matmul_quant_gemv_vnni.cc) when this
// CPU has it. Both give the same bits.
#include "kernels/cpu/matmul_quant_gemv_impl.h"

namespace anvil::cpu {

void MatMulGemvQuantAvx2(DType type, const TileArgs& t) {
  if (HasAvxVnni()) {
    MatMulGemvQuantVnni(type, t);
    return;
  }
  RunGemvTile<false>(type, t);
}

}  // namespace anvil::cpu
