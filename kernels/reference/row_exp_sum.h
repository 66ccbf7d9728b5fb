// The two row reductions that the reference softmax, log-sum-exp and cross-entropy share: the
// maximum of a (scaled) float row, and the sum of exp(z - max) in double. Only reference/*.cc
// include this; the CPU backend has its own AVX2 versions (kernels/cpu/softmax_avx2.h).
#ifndef ANVIL_KERNELS_REFERENCE_ROW_EXP_SUM_H_
#define ANVIL_KERNELS_REFERENCE_ROW_EXP_SUM_H_

#include <cmath>
#include <cstdint>

namespace anvil::reference {

// max over c of z[c] = scale * x[c], each product rounded to float (x: [n]). NaN entries are
// skipped here (they turn the sum below into NaN anyway); an all -inf row gives -inf.
inline float ScaledRowMax(const float* x, int64_t n, float scale) {
  float mx = -INFINITY;
  for (int64_t c = 0; c < n; ++c) {
    const float z = scale * x[c];
    if (z > mx) mx = z;
  }
  return mx;
}

// sum over c of e^(z[c] - mx) with z as above (x: [n]), every term and the running sum in
// double, in index order; e^(z[c] - mx) is also written to e[c] when e is not null (e: [n]).
// double(z) - double(mx) is exact (or, for a tiny z beside a huge mx, rounded far below float
// precision), so each term carries only std::exp's sub-ulp error in double. With mx = -inf (an
// all -inf row) every term is exp(NaN) = NaN, which is the documented result for such rows.
inline double ScaledRowExpSum(const float* x, int64_t n, float scale, float mx, double* e) {
  double sum = 0.0;
  for (int64_t c = 0; c < n; ++c) {
    const double term = std::exp(static_cast<double>(scale * x[c]) - static_cast<double>(mx));
    if (e != nullptr) e[c] = term;
    sum += term;
  }
  return sum;
}

}  // namespace anvil::reference

#endif  // ANVIL_KERNELS_REFERENCE_ROW_EXP_SUM_H_
