// TEMPORARY placeholder until cpu/gemm_openblas.cc lands.
#include "kernels/cpu/cpu.h"
namespace anvil::cpu {
absl::Status Gemm(ThreadPool*, const GemmArgs&) { return absl::UnimplementedError("gemm"); }
}  // namespace anvil::cpu
