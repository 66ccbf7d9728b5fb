// Prefill matmul (several activation rows) for Q8_0, Q4_0 and Q4_1 weights: the AVX2 build of
// the tile in matmul_quant_gemm_impl.h, or the AVX-VNNI build (matmul_quant_gemm_vnni.cc) when
// this CPU has it. Both give the same bits.
#include "kernels/cpu/matmul_quant_gemm_impl.h"

namespace anvil::cpu {

void MatMulGemmQuantAvx2(DType type, const TileArgs& t) {
  if (HasAvxVnni()) {
    MatMulGemmQuantVnni(type, t);
    return;
  }
  RunGemmTile<false>(type, t);
}

}  // namespace anvil::cpu
