// TEMPORARY placeholder: the CUDA matmul family lands here.
#include "kernels/cuda/cuda.h"
namespace anvil::cuda {
absl::Status MatMul(Context&, const MatMulArgs&) { return absl::UnimplementedError("cuda matmul"); }
absl::Status Gemm(Context&, const GemmArgs&) { return absl::UnimplementedError("cuda gemm"); }
}  // namespace anvil::cuda
