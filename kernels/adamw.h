// One AdamW step over a flat float parameter tensor, with PyTorch's semantics
// (torch.optim.AdamW, foreach=False, amsgrad=False, maximize=False), in PyTorch's order:
//   p   = p * (1 - lr * weight_decay)                  (decoupled weight decay)
//   m   = lerp(m, g, 1 - beta1)                        (m + w*(g - m) for w < 0.5, else
//                                                       g - (g - m)*(1 - w))
//   v   = v * beta2 + (1 - beta2) * g * g
//   bc1 = 1 - beta1^step, bc2 = 1 - beta2^step         (in double, as Python computes them)
//   p   = p - (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// `step` counts from 1. The scalar factors are computed in double on the host and rounded to
// float once, as PyTorch does when it passes Python floats to its float kernels.
#ifndef ANVIL_KERNELS_ADAMW_H_
#define ANVIL_KERNELS_ADAMW_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace anvil {

struct AdamWArgs {
  float* param = nullptr;       // [n]
  const float* grad = nullptr;  // [n]
  float* m = nullptr;           // [n] first moment (zero before step 1)
  float* v = nullptr;           // [n] second moment (zero before step 1)
  int64_t n = 0;
  int64_t step = 1;             // >= 1
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 1e-2;
};
// InvalidArgument for step < 1 or betas outside [0, 1).
absl::Status AdamW(const ExecContext& ctx, const AdamWArgs& args);

}  // namespace anvil

#endif  // ANVIL_KERNELS_ADAMW_H_
