// Reference per-row cross-entropy with ignored rows (kernels/cross_entropy.h). Dispatch has
// already checked the shape and that every target is below V; a negative target marks an
// ignored row.
//
// Numerics (as the reference log-sum-exp, kernels/reference/softmax.cc): mx = max of the row in
// float, sum = sum of exp(logit - mx) in double, and then
//   lse[t]  = float(mx + log(sum))
//   loss[t] = float((mx - logit[target]) + log(sum))      (0 for an ignored row)
// The loss is formed in double from mx and the target's logit rather than from the rounded lse,
// so a confident, correct row (loss ~1e-7) keeps float precision instead of inheriting an
// absolute error of ~|lse| * 6e-8 (what is left is log(sum)'s ~1e-16 absolute error in double).
// lse is written for every row, ignored ones included.
//
// CrossEntropyBackward: dlogits = float(dloss * (exp(double(logit) - double(lse)) - onehot)),
// each element from its own logit (read before it is overwritten when dlogits aliases logits).
#include <algorithm>
#include <cmath>

#include "kernels/reference/reference.h"
#include "kernels/reference/row_exp_sum.h"

namespace anvil::reference {

void CrossEntropy(const CrossEntropyArgs& a) {
  for (int64_t t = 0; t < a.t; ++t) {
    const float* logits = a.logits + t * a.v;  // [V]
    const float mx = ScaledRowMax(logits, a.v, 1.0f);
    const double log_sum = std::log(ScaledRowExpSum(logits, a.v, 1.0f, mx, nullptr));
    if (a.lse != nullptr) a.lse[t] = static_cast<float>(static_cast<double>(mx) + log_sum);
    const int32_t target = a.targets[t];
    a.loss[t] = target < 0
                    ? 0.0f
                    : static_cast<float>((static_cast<double>(mx) - logits[target]) + log_sum);
  }
}

void CrossEntropyBackward(const CrossEntropyBackwardArgs& a) {
  for (int64_t t = 0; t < a.t; ++t) {
    const float* logits = a.logits + t * a.v;  // [V]
    float* dlogits = a.dlogits + t * a.v;      // [V]
    const int32_t target = a.targets[t];
    if (target < 0) {
      std::fill(dlogits, dlogits + a.v, 0.0f);
      continue;
    }
    const double lse = a.lse[t], dloss = a.dloss[t];
    for (int64_t c = 0; c < a.v; ++c) {
      const double p = std::exp(static_cast<double>(logits[c]) - lse);
      dlogits[c] = static_cast<float>(dloss * (c == target ? p - 1.0 : p));
    }
  }
}

}  // namespace anvil::reference
