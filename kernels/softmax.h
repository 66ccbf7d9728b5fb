// Row-wise softmax and log-sum-exp over a [R][C] float matrix. Both subtract the row maximum
// first. The reference takes exp and the sums in double and rounds once; the CPU and CUDA
// kernels work in float (partial sums of at most ~1k elements, combined in double on the CPU)
// and match the reference within a few ulps, not bitwise. Rows that are all -inf give NaN.
#ifndef ANVIL_KERNELS_SOFTMAX_H_
#define ANVIL_KERNELS_SOFTMAX_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace anvil {

struct SoftmaxArgs {
  const float* x = nullptr;  // [R][C]
  float* y = nullptr;        // [R][C]; may alias x
  int64_t rows = 0, cols = 0;
  float scale = 1.0f;        // softmax(scale * x)
};
absl::Status Softmax(const ExecContext& ctx, const SoftmaxArgs& args);

// out[r] = log(sum_c exp(x[r][c])) = max_r + log(sum_c exp(x[r][c] - max_r)).
struct LogSumExpArgs {
  const float* x = nullptr;  // [R][C]
  float* out = nullptr;      // [R]
  int64_t rows = 0, cols = 0;
};
absl::Status LogSumExp(const ExecContext& ctx, const LogSumExpArgs& args);

}  // namespace anvil

#endif  // ANVIL_KERNELS_SOFTMAX_H_
