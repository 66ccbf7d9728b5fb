// The CPU Gemm in builds without OpenBLAS (-DANVIL_OPENBLAS=OFF, e.g. the GPU bundle that
// scripts/gpu-check.sh makes): no silent fallback to slow loops, the op says why it is missing.
#include "kernels/cpu/cpu.h"

namespace anvil::cpu {

const char* GemmEngineName() { return "none"; }

absl::Status Gemm(ThreadPool* /*pool*/, const GemmArgs& /*args*/) {
  return absl::UnimplementedError("gemm: no kernel for backend cpu (built without OpenBLAS)");
}

}  // namespace anvil::cpu
