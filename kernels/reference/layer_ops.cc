// Reference loops for the per-token layer ops (layer_ops.h). They reproduce the float
// arithmetic of llama.cpp's CPU backend (ggml-cpu built with AVX512, as pip builds it on an
// AVX512 host) operation by operation, so that our activations are bit-identical to llama.cpp's:
// its matmuls re-quantize every activation to 8 bits, which turns any 1-ulp difference into a
// visibly different logit a few layers later. scripts/reference/compare_dumps.py checks this.
// Each op's comment states the order of operations a faster backend must keep to stay exact.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/quantize.h"
#include "kernels/reference/ggml_sum_order.h"
#include "kernels/reference/reference.h"

namespace anvil::reference {
namespace {

// ggml_v_expf (ggml-cpu vec.h, AVX512 variant, after ARM's optimized routines): x = n*ln2 + b
// with n = round(x/ln2) by the 1.5*2^23 shifter trick, a degree-5 polynomial j ~ e^b evaluated
// with fused multiply-adds in exactly this grouping, and e^x = j * 2^n (vscalefps = ldexp).
// |n| > 192 gives 0 or +inf, NaN stays NaN. It differs from libm's expf in the last bit for
// some inputs.
inline float ExpLikeGgml(float x) {
  const float shifter = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, shifter);
  const float n = z - shifter;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, std::fma(0x1.ffffecp-1f, b, 1.0f));
  if (std::isnan(n)) return n;
  if (std::fabs(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
  return std::ldexp(j, static_cast<int>(n));
}

}  // namespace

// ggml_compute_forward_rms_norm_f32: the float squares x*x summed in double in index order,
// mean = float(sum / C), scale = 1/sqrtf(mean + eps); then llama's separate MUL by the weight:
// y = (x * scale) * w, each product rounded.
void RmsNorm(const RmsNormArgs& a) {
  for (int64_t t = 0; t < a.t; ++t) {
    const float* x = a.x + t * a.c;
    float* y = a.y + t * a.c;
    double sum = 0.0;
    for (int64_t i = 0; i < a.c; ++i) sum += static_cast<double>(x[i] * x[i]);
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

// ggml's rope (NORM or NEOX pairs) with the fused multiply-adds gcc contracts its rotation
// into (checked against llama.cpp's dumps):
//   y0 = fma(x0, cos, -(x1 * sin)),  y1 = fma(x0, sin, x1 * cos).
// inverse negates sin (exact), which rotates by -theta as ggml's rope-back does (sin_sign = -1).
ANVIL_FMA_CLONES void Rope(const RopeArgs& a) {
  std::vector<float> cs(static_cast<size_t>(a.n_rot / 2)), sn(cs.size());
  for (int64_t t = 0; t < a.t; ++t) {
    RopeCosSin(a.pos[t], a.n_rot, a.freq_base, cs.data(), sn.data());
    if (a.inverse) {
      for (float& s : sn) s = -s;
    }
    for (int64_t h = 0; h < a.h; ++h) {
      float* x = a.x + (t * a.h + h) * a.d;
      for (int64_t i = 0; i < a.n_rot / 2; ++i) {
        const int64_t i0 = a.neox ? i : 2 * i;
        const int64_t i1 = a.neox ? i + a.n_rot / 2 : 2 * i + 1;
        const float x0 = x[i0], x1 = x[i1];
        x[i0] = std::fma(x0, cs[i], -(x1 * sn[i]));
        x[i1] = std::fma(x0, sn[i], x1 * cs[i]);
      }
    }
  }
}

// llama.cpp's attention without flash attention, F32 KV cache, one query row at a time:
//   kq[s]  = ggml_vec_dot_f32(q, k_s) over D (GgmlF32Order::kVecDot: llama.cpp's K*Q never
//            takes tinyBLAS: for T > 1 its Q operand is a permuted, non-contiguous view, and
//            for T == 1 llamafile declines single-column products);
//   w[s]   = kq[s] * scale (soft_max_ext's scale; the causal mask adds 0 or -inf);
//   e[s]   = ExpLikeGgml(w[s] - max);  sum (double) = sum over blocks of 16 keys
//            (16b..16b+15) of the float ReduceLanes16 of the block, keys past the causal limit
//            counting as 0 (ggml_vec_soft_max_f32 over llama.cpp's 256-padded rows);
//   p[s]   = e[s] * float(1.0 / sum);
//   out[d] = sum_s v_s[d] * p[s] in GgmlF32Order::kGemm order when the batch has T >= 2 rows
//            (tinyBLAS), kVecDot when T == 1.
// The last choice follows a.t, the rows passed in, while llama.cpp decides by its ubatch size:
// when the model passes only the rows that need logits (last layer of a multi-token chunk
// that wants a single row), llama.cpp's order is kGemm but this takes kVecDot. The model
// avoids that by running the last layer's attention and wo over all T rows, as llama.cpp does.
ANVIL_FMA_CLONES void Attention(const AttentionArgs& a) {
  const int64_t group = a.h / a.h_kv;
  const auto kqv_order = a.t >= 2 ? GgmlF32Order::kGemm : GgmlF32Order::kVecDot;
  const int64_t n_blocks = (a.past + a.t + kGgmlLanes - 1) / kGgmlLanes;
  std::vector<float> e(static_cast<size_t>(n_blocks * kGgmlLanes)), v_col(e.size());
  std::vector<float> k_row(static_cast<size_t>(a.d));
  for (int64_t t = 0; t < a.t; ++t) {
    const int64_t n_keys = a.past + t + 1;
    for (int64_t h = 0; h < a.h; ++h) {
      const int64_t hk = h / group;
      const float* q = a.q + (t * a.h + h) * a.d;
      float mx = -INFINITY;
      for (int64_t s = 0; s < n_keys; ++s) {
        for (int64_t i = 0; i < a.d; ++i) {
          k_row[i] = CacheAt(a, a.k, a.k_blocks, a.k_blocks_f16, s, hk, i);
        }
        e[s] = GgmlDotF32(q, k_row.data(), a.d, GgmlF32Order::kVecDot) * a.scale;
        mx = std::max(mx, e[s]);
      }
      double sum = 0.0;
      for (int64_t b = 0; b * kGgmlLanes < n_keys; ++b) {
        float* block = e.data() + b * kGgmlLanes;
        for (int64_t l = 0; l < kGgmlLanes; ++l) {
          block[l] = b * kGgmlLanes + l < n_keys ? ExpLikeGgml(block[l] - mx) : 0.0f;
        }
        sum += ReduceLanes16(block);
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t s = 0; s < n_keys; ++s) e[s] *= inv;
      float* out = a.out + (t * a.h + h) * a.d;
      for (int64_t i = 0; i < a.d; ++i) {
        for (int64_t s = 0; s < n_keys; ++s) {
          v_col[s] = CacheAt(a, a.v, a.v_blocks, a.v_blocks_f16, s, hk, i);
        }
        out[i] = GgmlDotF32(v_col.data(), e.data(), n_keys, kqv_order);
      }
    }
  }
}

// ggml_vec_swiglu_f32: silu(g) * up with silu(g) = g / (1 + ExpLikeGgml(0 - g)), each step
// rounded to float. (ggml sends the last n % 16 elements of a row through libm's expf instead;
// our rows are multiples of 16 wide, so that tail does not occur.)
ANVIL_FMA_CLONES void SwiGlu(const SwiGluArgs& a) {
  for (int64_t i = 0; i < a.n; ++i) {
    const float g = a.gate[i];
    a.out[i] = (g / (1.0f + ExpLikeGgml(0.0f - g))) * a.up[i];
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
