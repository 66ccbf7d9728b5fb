// One AdamW element update with PyTorch's float32 CPU roundings, shared by the reference loop
// (reference/adamw.cc, which documents the choices) and the scalar tail of the AVX2 kernel
// (cpu/adamw.cc), so that the two agree bit for bit. The scalar factors are derived once per
// step from AdamWArgs, in double, and rounded to float once each.
#ifndef ANVIL_KERNELS_REFERENCE_ADAMW_UPDATE_H_
#define ANVIL_KERNELS_REFERENCE_ADAMW_UPDATE_H_

#include <cmath>

#include "kernels/adamw.h"

namespace anvil::reference {

// The float scalars of one step, each computed in double as Python computes it in
// torch.optim.adamw, then rounded to float as ATen does when a Python float meets a float
// tensor (Scalar::to<float>()).
struct AdamWFactors {
  float decay;            // 1 - lr * weight_decay                    (param.mul_)
  float lerp_weight;      // 1 - beta1                                (exp_avg.lerp_)
  bool lerp_small;        // |lerp_weight| < 0.5 (ATen's is_lerp_weight_small)
  float beta2;            // beta2                                    (exp_avg_sq.mul_)
  float one_minus_beta2;  // 1 - beta2                                (addcmul_ value)
  float bc2_sqrt;         // (1 - beta2^step) ** 0.5                  (denominator)
  float eps;              // eps                                      (add_)
  float neg_step_size;    // -(lr / (1 - beta1^step))                 (addcdiv_ value)
};

inline AdamWFactors MakeAdamWFactors(const AdamWArgs& a) {
  const double step = static_cast<double>(a.step);  // PyTorch keeps `step` as a float tensor
  const double bc1 = 1.0 - std::pow(a.beta1, step);
  const double bc2 = 1.0 - std::pow(a.beta2, step);
  AdamWFactors f;
  f.decay = static_cast<float>(1.0 - a.lr * a.weight_decay);
  f.lerp_weight = static_cast<float>(1.0 - a.beta1);
  f.lerp_small = std::fabs(f.lerp_weight) < 0.5f;
  f.beta2 = static_cast<float>(a.beta2);
  f.one_minus_beta2 = static_cast<float>(1.0 - a.beta2);
  f.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  f.eps = static_cast<float>(a.eps);
  f.neg_step_size = static_cast<float>(-(a.lr / bc1));
  return f;
}

// One element, every operation rounded to float in this order. The lerp is one fused
// multiply-add (std::fma: explicit, so -ffp-contract=off leaves it fused and the AVX2 kernel's
// _mm256_fmadd_ps gives the same bits); every other product and sum is rounded on its own.
inline void AdamWUpdate(const AdamWFactors& f, float& p, float g, float& m, float& v) {
  p = p * f.decay;
  const float d = g - m;
  m = f.lerp_small ? std::fma(f.lerp_weight, d, m) : std::fma(f.lerp_weight - 1.0f, d, g);
  v = v * f.beta2 + (f.one_minus_beta2 * g) * g;
  const float denom = std::sqrt(v) / f.bc2_sqrt + f.eps;
  p = p + (f.neg_step_size * m) / denom;
}

}  // namespace anvil::reference

#endif  // ANVIL_KERNELS_REFERENCE_ADAMW_UPDATE_H_
