// The prefill tile of matmul_quant_gemm_impl.h compiled with AVX-VNNI (vpdpbusd on 256-bit
// vectors; this file alone gets -mavxvnni). Called only when HasAvxVnni().
#include "kernels/cpu/matmul_quant_gemm_impl.h"

#ifndef __AVXVNNI__
#error "matmul_quant_gemm_vnni.cc must be compiled with -mavxvnni"
#endif

namespace anvil::cpu {

void MatMulGemmQuantVnni(DType type, const TileArgs& t) { RunGemmTile<true>(type, t); }

}  // namespace anvil::cpu
