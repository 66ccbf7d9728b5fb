// Reference F32 GEMM (kernels/gemm.h): plain loops, the truth the OpenBLAS and cuBLAS backends are
// checked against. Numerics: every product a*b is exact in double and the K products are summed
// in double in index order, then alpha and beta are applied in double and the result is rounded to
// float once. So the reference is (nearly) the correctly rounded result, and the error of a fast
// backend is its own float accumulation error, bounded by ~K * eps * sum|terms|.
// BLAS conventions: beta == 0 never reads C (it may hold NaN); alpha == 0 or K == 0 never reads A
// or B (C = beta * C).
#include <cstdint>

#include "kernels/reference/reference.h"

namespace anvil::reference {

void Gemm(const GemmArgs& g) {
  const bool use_product = g.alpha != 0.0f && g.k > 0;
  for (int64_t i = 0; i < g.m; ++i) {
    float* c_row = g.c + i * g.ldc;  // [N]
    for (int64_t j = 0; j < g.n; ++j) {
      double acc = 0.0;
      if (use_product) {
        for (int64_t p = 0; p < g.k; ++p) {
          // op(A)[i][p]: A is [M][lda] or, transposed, [K][lda].
          const float a = g.trans_a ? g.a[p * g.lda + i] : g.a[i * g.lda + p];
          // op(B)[p][j]: B is [K][ldb] or, transposed, [N][ldb].
          const float b = g.trans_b ? g.b[j * g.ldb + p] : g.b[p * g.ldb + j];
          acc += static_cast<double>(a) * static_cast<double>(b);
        }
      }
      double out = static_cast<double>(g.alpha) * acc;
      if (g.beta != 0.0f) out += static_cast<double>(g.beta) * static_cast<double>(c_row[j]);
      c_row[j] = static_cast<float>(out);
    }
  }
}

}  // namespace anvil::reference
