// Reference row softmax and log-sum-exp (kernels/softmax.h): the truth that the CPU and CUDA
// kernels are compared with, within atol + rtol * |ref|. Dispatch (kernels/dispatch.cc) has
// already checked the shape.
//
// Numerics, chosen for accuracy rather than to mimic any fast kernel:
//   z[c] = scale * x[c]              rounded to float (as softmax(scale * x) of a float tensor)
//   mx   = max_c z[c]                float, exact
//   e[c] = exp(double(z[c]) - mx)    in double (std::exp)
//   sum  = sum_c e[c]                in double, index order
//   y[c] = float(e[c] / sum);  lse = float(mx + log(sum))
// So each output is within about one float rounding of the exact value. The header's "exp and
// the sums are in float" describes the fast kernels; accumulating those in double here costs
// nothing that matters and keeps the reference's own error far below their tolerance (a float
// running sum over V = 49152 terms alone could be off by ~1e-3 relative in the worst case).
// Rows that are all -inf (or hold NaN or +inf) give NaN, as in PyTorch's softmax.
#include <cmath>
#include <vector>

#include "kernels/reference/reference.h"
#include "kernels/reference/row_exp_sum.h"

namespace anvil::reference {

void Softmax(const SoftmaxArgs& a) {
  // The exponentials are kept in double until the sum is known; y may alias x.
  std::vector<double> e(static_cast<size_t>(a.cols));  // [C]
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* x = a.x + r * a.cols;
    float* y = a.y + r * a.cols;
    const float mx = ScaledRowMax(x, a.cols, a.scale);
    const double sum = ScaledRowExpSum(x, a.cols, a.scale, mx, e.data());
    for (int64_t c = 0; c < a.cols; ++c) y[c] = static_cast<float>(e[c] / sum);
  }
}

void LogSumExp(const LogSumExpArgs& a) {
  for (int64_t r = 0; r < a.rows; ++r) {
    const float* x = a.x + r * a.cols;
    const float mx = ScaledRowMax(x, a.cols, 1.0f);
    const double sum = ScaledRowExpSum(x, a.cols, 1.0f, mx, nullptr);
    a.out[r] = static_cast<float>(static_cast<double>(mx) + std::log(sum));
  }
}

}  // namespace anvil::reference
