// Reference loops for the per-token layer ops (layer_ops.h).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/quantize.h"
#include "kernels/reference/reference.h"

namespace anvil::reference {

void RmsNorm(const RmsNormArgs& a) {
  for (int64_t t = 0; t < a.t; ++t) {
    const float* x = a.x + t * a.c;
    float* y = a.y + t * a.c;
    double sum = 0.0;
    for (int64_t i = 0; i < a.c; ++i) sum += static_cast<double>(x[i]) * x[i];
    const float mean = static_cast<float>(sum / a.c);
    const float scale = 1.0f / std::sqrt(mean + a.eps);
    for (int64_t i = 0; i < a.c; ++i) y[i] = (x[i] * scale) * a.w[i];
  }
}

void RopeCosSin(int32_t pos, int64_t n_rot, float freq_base, float* cos_out, float* sin_out) {
  const float theta_scale = std::pow(freq_base, -2.0f / static_cast<float>(n_rot));
  float theta = static_cast<float>(pos);
  for (int64_t i = 0; i < n_rot / 2; ++i) {
    cos_out[i] = std::cos(theta);
    sin_out[i] = std::sin(theta);
    theta *= theta_scale;
  }
}

void Rope(const RopeArgs& a) {
  std::vector<float> cs(static_cast<size_t>(a.n_rot / 2)), sn(cs.size());
  for (int64_t t = 0; t < a.t; ++t) {
    RopeCosSin(a.pos[t], a.n_rot, a.freq_base, cs.data(), sn.data());
    for (int64_t h = 0; h < a.h; ++h) {
      float* x = a.x + (t * a.h + h) * a.d;
      for (int64_t i = 0; i < a.n_rot / 2; ++i) {
        const int64_t i0 = a.neox ? i : 2 * i;
        const int64_t i1 = a.neox ? i + a.n_rot / 2 : 2 * i + 1;
        const float x0 = x[i0], x1 = x[i1];
        x[i0] = x0 * cs[i] - x1 * sn[i];
        x[i1] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

void Attention(const AttentionArgs& a) {
  const int64_t group = a.h / a.h_kv;
  std::vector<float> scores(static_cast<size_t>(a.past + a.t));
  for (int64_t t = 0; t < a.t; ++t) {
    const int64_t n_keys = a.past + t + 1;
    for (int64_t h = 0; h < a.h; ++h) {
      const int64_t hk = h / group;
      const float* q = a.q + (t * a.h + h) * a.d;
      float mx = -INFINITY;
      for (int64_t s = 0; s < n_keys; ++s) {
        const float* k = a.k + (s * a.h_kv + hk) * a.d;
        float dot = 0.0f;
        for (int64_t i = 0; i < a.d; ++i) dot += q[i] * k[i];
        scores[s] = dot * a.scale;
        mx = std::max(mx, scores[s]);
      }
      double sum = 0.0;
      for (int64_t s = 0; s < n_keys; ++s) {
        scores[s] = std::exp(scores[s] - mx);
        sum += scores[s];
      }
      const float inv = static_cast<float>(1.0 / sum);
      float* out = a.out + (t * a.h + h) * a.d;
      std::fill(out, out + a.d, 0.0f);
      for (int64_t s = 0; s < n_keys; ++s) {
        const float p = scores[s] * inv;
        const float* v = a.v + (s * a.h_kv + hk) * a.d;
        for (int64_t i = 0; i < a.d; ++i) out[i] += p * v[i];
      }
    }
  }
}

void SwiGlu(const SwiGluArgs& a) {
  for (int64_t i = 0; i < a.n; ++i) {
    const float g = a.gate[i];
    a.out[i] = (g / (1.0f + std::exp(-g))) * a.up[i];
  }
}

void AddInPlace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void GetRows(const GetRowsArgs& a) {
  const int64_t row_bytes = a.c / BlockElems(a.type) * BlockBytes(a.type);
  const auto* table = static_cast<const uint8_t*>(a.table);
  for (int64_t t = 0; t < a.t; ++t) {
    DequantizeRow(a.type, table + a.ids[t] * row_bytes, a.out + t * a.c, a.c);
  }
}

}  // namespace anvil::reference
