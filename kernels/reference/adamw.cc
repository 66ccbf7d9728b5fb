// Reference AdamW step (kernels/adamw.h): PyTorch's torch.optim.AdamW single-tensor path
// (foreach=False, the CPU default) reproduced rounding for rounding as ATen's float32 CPU
// kernels compute it. Dispatch has already checked step >= 1 and the betas.
//
// Python side, in double (bc1, bc2 and the factors below; `step` is a float in PyTorch, and
// `** 0.5` is taken as std::sqrt, which agrees with libm's pow(x, 0.5) once rounded to float):
//   bc1 = 1 - beta1^step,  bc2 = 1 - beta2^step,  step_size = lr / bc1,  bc2_sqrt = sqrt(bc2)
// Each scalar then reaches a tensor op as a float (ATen's Scalar::to<float>(): one rounding):
//   decay = f(1 - lr*wd), w = f(1 - beta1), b2 = f(beta2), c2 = f(1 - beta2),
//   s2 = f(bc2_sqrt), e = f(eps), k = f(-step_size)
// Tensor side, all float, each operation rounded on its own except where marked fused:
//   p.mul_(decay)                   p = p * decay
//   m.lerp_(g, w)                   m = fma(w, g - m, m)          if |w| < 0.5
//                                   m = fma(w - 1, g - m, g)      otherwise (w - 1 is exact)
//     ATen's vectorized lerp (LerpKernel.cpp, lerp_vec) is exactly this fused form, and the
//     CUDA one contracts to it too; so "m + w*(g - m)" in the header is one rounding here.
//   v.mul_(b2).addcmul_(g, g, c2)   v = v * b2 + (c2 * g) * g      (left to right, as ATen)
//   denom = sqrt(v) / s2 + e        sqrt and division correctly rounded; a true division, not
//                                   a multiply by 1/s2 (ATen does that only for half types)
//   p.addcdiv_(m, denom, k)         p = p + (k * m) / denom
// The weight decay multiply runs even for weight_decay = 0 (PyTorch skips it), which changes
// nothing: p * 1.0f == p for every p.
#include "kernels/reference/adamw_update.h"
#include "kernels/reference/reference.h"

namespace anvil::reference {

void AdamW(const AdamWArgs& a) {
  const AdamWFactors f = MakeAdamWFactors(a);
  for (int64_t i = 0; i < a.n; ++i) AdamWUpdate(f, a.param[i], a.grad[i], a.m[i], a.v[i]);
}

}  // namespace anvil::reference
