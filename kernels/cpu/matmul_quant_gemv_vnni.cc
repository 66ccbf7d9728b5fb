// The decode tile of matmul_quant_gemv_impl.h compiled with AVX-VNNI (this file alone gets
// -mavxvnni). Called only when HasAvxVnni().
#include "kernels/cpu/matmul_quant_gemv_impl.h"

#ifndef __AVXVNNI__
#error "matmul_quant_gemv_vnni.cc must be compiled with -mavxvnni"
#endif

namespace anvil::cpu {

void MatMulGemvQuantVnni(DType type, const TileArgs& t) { RunGemvTile<true>(type, t); }

}  // namespace anvil::cpu
