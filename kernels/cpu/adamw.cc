// CPU AdamW step (kernels/adamw.h): AVX2, the flat tensor split into chunks across the pool.
// Bit-identical to the reference (kernels/reference/adamw.cc documents the roundings): the same
// float factors (MakeAdamWFactors), the same operations in the same order, each multiply, add,
// sqrt and division rounded on its own (AVX2 sqrt and div are correctly rounded, and the
// library is built with -ffp-contract=off), and the lerp as one explicit fused multiply-add.
// Memory bound: 16 bytes read and 12 written per parameter.
#include <immintrin.h>

#include "kernels/cpu/cpu.h"
#include "kernels/reference/adamw_update.h"

namespace anvil::cpu {
namespace {

// Parameters per pool chunk (a multiple of 8, so only the last chunk has a scalar tail).
constexpr int64_t kChunkElems = 16384;

}  // namespace

absl::Status AdamW(ThreadPool* pool, const AdamWArgs& a) {
  const reference::AdamWFactors f = reference::MakeAdamWFactors(a);
  const __m256 decay = _mm256_set1_ps(f.decay);
  // ATen's lerp_vec: coefficient w (|w| < 0.5, base m) or w - 1 (base g), fused with g - m.
  const __m256 lerp_coeff = _mm256_set1_ps(f.lerp_small ? f.lerp_weight : f.lerp_weight - 1.0f);
  const __m256 beta2 = _mm256_set1_ps(f.beta2);
  const __m256 one_minus_beta2 = _mm256_set1_ps(f.one_minus_beta2);
  const __m256 bc2_sqrt = _mm256_set1_ps(f.bc2_sqrt);
  const __m256 eps = _mm256_set1_ps(f.eps);
  const __m256 neg_step_size = _mm256_set1_ps(f.neg_step_size);
  ParallelFor(pool, a.n, kChunkElems, [&](int64_t b, int64_t e, int) {
    int64_t i = b;
    for (; i + 8 <= e; i += 8) {
      const __m256 g = _mm256_loadu_ps(a.grad + i);
      const __m256 m = _mm256_loadu_ps(a.m + i);
      __m256 p = _mm256_mul_ps(_mm256_loadu_ps(a.param + i), decay);
      const __m256 m_new = _mm256_fmadd_ps(lerp_coeff, _mm256_sub_ps(g, m), f.lerp_small ? m : g);
      const __m256 v_new = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(a.v + i), beta2),
                                         _mm256_mul_ps(_mm256_mul_ps(one_minus_beta2, g), g));
      const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(v_new), bc2_sqrt), eps);
      p = _mm256_add_ps(p, _mm256_div_ps(_mm256_mul_ps(neg_step_size, m_new), denom));
      _mm256_storeu_ps(a.param + i, p);
      _mm256_storeu_ps(a.m + i, m_new);
      _mm256_storeu_ps(a.v + i, v_new);
    }
    for (; i < e; ++i) reference::AdamWUpdate(f, a.param[i], a.grad[i], a.m[i], a.v[i]);
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
