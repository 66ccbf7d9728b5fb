// TEMPORARY placeholder: the CUDA layer and training ops land here.
#include "kernels/cuda/cuda.h"
namespace anvil::cuda {
absl::Status RmsNorm(Context&, const RmsNormArgs&) { return absl::UnimplementedError("x"); }
absl::Status Rope(Context&, const RopeArgs&) { return absl::UnimplementedError("x"); }
absl::Status Attention(Context&, const AttentionArgs&) { return absl::UnimplementedError("x"); }
absl::Status SwiGlu(Context&, const SwiGluArgs&) { return absl::UnimplementedError("x"); }
absl::Status AddInPlace(Context&, float*, const float*, int64_t) { return absl::UnimplementedError("x"); }
absl::Status GetRows(Context&, const GetRowsArgs&) { return absl::UnimplementedError("x"); }
absl::Status Softmax(Context&, const SoftmaxArgs&) { return absl::UnimplementedError("x"); }
absl::Status LogSumExp(Context&, const LogSumExpArgs&) { return absl::UnimplementedError("x"); }
absl::Status CrossEntropy(Context&, const CrossEntropyArgs&) { return absl::UnimplementedError("x"); }
absl::Status AdamW(Context&, const AdamWArgs&) { return absl::UnimplementedError("x"); }
}  // namespace anvil::cuda
