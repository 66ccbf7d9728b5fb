// TEMPORARY placeholder until the CPU training ops land.
#include "kernels/cpu/cpu.h"
namespace anvil::cpu {
absl::Status Softmax(ThreadPool*, const SoftmaxArgs&) { return absl::UnimplementedError("softmax"); }
absl::Status LogSumExp(ThreadPool*, const LogSumExpArgs&) { return absl::UnimplementedError("lse"); }
absl::Status CrossEntropy(ThreadPool*, const CrossEntropyArgs&) { return absl::UnimplementedError("ce"); }
absl::Status AdamW(ThreadPool*, const AdamWArgs&) { return absl::UnimplementedError("adamw"); }
}  // namespace anvil::cpu
