// Reference loops for the backward layer ops (layer_ops_backward.h): the gradients of the
// forwards in layer_ops.cc, written straight from their formulas with every sum and product in
// double and one rounding to float per output (or per accumulation into a float gradient). They
// define the result the CPU and CUDA backends are tested against; the finite-difference tests
// (tests/unit/kernels_backward_test.cc) check them against the forwards.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/reference/reference.h"

namespace anvil::reference {

void RmsNormBackward(const RmsNormBackwardArgs& a) {
  for (int64_t t = 0; t < a.t; ++t) {
    const float* x = a.x + t * a.c;    // [C]
    const float* dy = a.dy + t * a.c;  // [C]
    float* dx = a.dx + t * a.c;        // [C]
    double sum_sq = 0.0, dot = 0.0;
    for (int64_t i = 0; i < a.c; ++i) {
      sum_sq += static_cast<double>(x[i]) * x[i];
      dot += static_cast<double>(a.w[i]) * dy[i] * x[i];
    }
    const double r = 1.0 / std::sqrt(sum_sq / static_cast<double>(a.c) + a.eps);
    const double k = r * r * r / static_cast<double>(a.c) * dot;
    for (int64_t i = 0; i < a.c; ++i) {
      dx[i] = static_cast<float>(dx[i] + (r * a.w[i] * dy[i] - k * x[i]));
      if (a.dw != nullptr) {
        a.dw[i] = static_cast<float>(a.dw[i] + static_cast<double>(dy[i]) * x[i] * r);
      }
    }
  }
}

// Row by row over (query t, head h): the probabilities of the forward (in double), then
//   dp[s] = dout . v_s,  ds[s] = p[s] * (dp[s] - dout . out),
//   dq = scale * sum_s ds[s] k_s,  dk_s += scale * ds[s] q,  dv_s += p[s] dout,
// with dk and dv summed in double over every query and every head of the group.
void AttentionBackward(const AttentionBackwardArgs& a) {
  const int64_t group = a.h / a.h_kv;
  const auto row = [&](const float* base, int64_t t, int64_t heads, int64_t h) {
    return base + (t * heads + h) * a.d;
  };
  std::vector<double> dk(static_cast<size_t>(a.t * a.h_kv * a.d), 0.0), dv(dk.size(), 0.0);
  std::vector<double> p(static_cast<size_t>(a.t)), ds(p.size());
  for (int64_t t = 0; t < a.t; ++t) {
    for (int64_t h = 0; h < a.h; ++h) {
      const int64_t hk = h / group;
      const float* q = row(a.q, t, a.h, h);
      const float* dout = row(a.dout, t, a.h, h);
      const float* out = row(a.out, t, a.h, h);
      double mx = -INFINITY;
      for (int64_t s = 0; s <= t; ++s) {
        const float* k = row(a.k, s, a.h_kv, hk);
        double dot = 0.0;
        for (int64_t i = 0; i < a.d; ++i) dot += static_cast<double>(q[i]) * k[i];
        p[s] = static_cast<double>(a.scale) * dot;
        mx = std::max(mx, p[s]);
      }
      double sum = 0.0;
      for (int64_t s = 0; s <= t; ++s) {
        p[s] = std::exp(p[s] - mx);
        sum += p[s];
      }
      double delta = 0.0;
      for (int64_t i = 0; i < a.d; ++i) delta += static_cast<double>(dout[i]) * out[i];
      for (int64_t s = 0; s <= t; ++s) {
        p[s] /= sum;
        const float* v = row(a.v, s, a.h_kv, hk);
        double dp = 0.0;
        for (int64_t i = 0; i < a.d; ++i) dp += static_cast<double>(dout[i]) * v[i];
        ds[s] = p[s] * (dp - delta);
      }
      float* dq = a.dq + (t * a.h + h) * a.d;
      for (int64_t i = 0; i < a.d; ++i) {
        double acc = 0.0;
        for (int64_t s = 0; s <= t; ++s) acc += ds[s] * row(a.k, s, a.h_kv, hk)[i];
        dq[i] = static_cast<float>(a.scale * acc);
      }
      for (int64_t s = 0; s <= t; ++s) {
        double* dks = dk.data() + (s * a.h_kv + hk) * a.d;
        double* dvs = dv.data() + (s * a.h_kv + hk) * a.d;
        for (int64_t i = 0; i < a.d; ++i) {
          dks[i] += a.scale * ds[s] * q[i];
          dvs[i] += p[s] * dout[i];
        }
      }
    }
  }
  for (size_t i = 0; i < dk.size(); ++i) {
    a.dk[i] = static_cast<float>(dk[i]);
    a.dv[i] = static_cast<float>(dv[i]);
  }
}

// Inputs are read before either output is written, so dgate or dup may alias dout (or gate/up).
void SwiGluBackward(const SwiGluBackwardArgs& a) {
  for (int64_t i = 0; i < a.n; ++i) {
    const double g = a.gate[i], up = a.up[i], dout = a.dout[i];
    const double s = 1.0 / (1.0 + std::exp(-g));
    a.dup[i] = static_cast<float>(dout * g * s);
    a.dgate[i] = static_cast<float>(dout * up * s * (1.0 + g * (1.0 - s)));
  }
}

// Float adds in token order: a row hit by several tokens sums them first to last.
void EmbeddingBackward(const EmbeddingBackwardArgs& a) {
  for (int64_t t = 0; t < a.t; ++t) {
    float* dst = a.dtable + static_cast<int64_t>(a.ids[t]) * a.c;  // [C]
    const float* src = a.dy + t * a.c;                             // [C]
    for (int64_t i = 0; i < a.c; ++i) dst[i] += src[i];
  }
}

}  // namespace anvil::reference
