// The backward pass of TrainableLlama (notes §5.1): head and output norm, then each layer in
// reverse (FFN, then attention, each through its RMSNorm into the residual gradient), then the
// embedding. Linear modules give dx = g W, dW += g^T x (full fine-tuning), and for LoRA
// dB += s g^T u, dA += s (g B)^T x_drop, dx += s (g B) A (masked like the forward's dropout).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/core/status_macros.h"
#include "kernels/gemm.h"
#include "kernels/layer_ops.h"
#include "kernels/layer_ops_backward.h"
#include "model/trainable_llama.h"

namespace anvil {
namespace {

void Resize(std::vector<float>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(static_cast<size_t>(n));
}

// c [m][n] = alpha * a [m][k] b [k][n] + beta * c.
absl::Status GemmNN(const ExecContext& ex, const float* a, const float* b, float* c, int64_t m,
                    int64_t n, int64_t k, float alpha, float beta) {
  GemmArgs g;
  g.m = m, g.n = n, g.k = k;
  g.alpha = alpha;
  g.a = a, g.lda = k;
  g.b = b, g.ldb = n;
  g.beta = beta;
  g.c = c, g.ldc = n;
  return Gemm(ex, g);
}

// c [m][n] += alpha * a^T b, a [k][m], b [k][n] (a weight gradient summed over k tokens).
absl::Status GemmTN(const ExecContext& ex, const float* a, const float* b, float* c, int64_t m,
                    int64_t n, int64_t k, float alpha) {
  GemmArgs g;
  g.trans_a = true;
  g.m = m, g.n = n, g.k = k;
  g.alpha = alpha;
  g.a = a, g.lda = m;
  g.b = b, g.ldb = n;
  g.beta = 1.0f;
  g.c = c, g.ldc = n;
  return Gemm(ex, g);
}

}  // namespace

absl::Status TrainableLlama::LinearBackward(const Linear& lin, const float* g, const float* x,
                                            const float* u, float* dx, bool accumulate_dx,
                                            int64_t n, uint64_t dropout_key) {
  const int64_t rows = lin.rows, cols = lin.cols, r = lin.rank;
  const float* w = Weight(*lin.base, lin.full, &scratch_w_);
  // dx [n][cols] (+)= g [n][rows] W [rows][cols]
  ANVIL_RETURN_IF_ERROR(GemmNN(exec_, g, w, dx, n, cols, rows, 1.0f, accumulate_dx ? 1.0f : 0.0f));
  if (lin.full != nullptr) {
    ANVIL_RETURN_IF_ERROR(GemmTN(exec_, g, x, lin.full->grad.data(), rows, cols, n, 1.0f));
  }
  if (lin.a == nullptr) return absl::OkStatus();
  // dB [rows][r] += s g^T u
  ANVIL_RETURN_IF_ERROR(GemmTN(exec_, g, u, lin.db, rows, r, n, lin.scale));
  // gu [n][r] = s g B
  Resize(&lora_g_, n * r);
  float* gu = lora_g_.data();
  ANVIL_RETURN_IF_ERROR(GemmNN(exec_, g, lin.b, gu, n, r, rows, lin.scale, 0.0f));
  const float* xa = x;
  if (lin.dropout > 0.0f) {
    Resize(&lora_x_, n * cols);
    LoraDropout(dropout_key, lin.stream, lin.dropout, x, lora_x_.data(), n * cols);
    xa = lora_x_.data();
  }
  // dA [r][cols] += gu^T x_drop
  ANVIL_RETURN_IF_ERROR(GemmTN(exec_, gu, xa, lin.da, r, cols, n, 1.0f));
  if (lin.dropout == 0.0f) return GemmNN(exec_, gu, lin.a, dx, n, cols, r, 1.0f, 1.0f);
  // dx += dropout'(gu A): the same mask and 1/(1-p) as the forward.
  float* t = lora_x_.data();
  ANVIL_RETURN_IF_ERROR(GemmNN(exec_, gu, lin.a, t, n, cols, r, 1.0f, 0.0f));
  LoraDropout(dropout_key, lin.stream, lin.dropout, t, t, n * cols);
  return AddInPlace(exec_, dx, t, n * cols);
}

absl::Status TrainableLlama::LayerBackward(int64_t l, float* dx, const TrainLayerActs& a,
                                           const float* x_in) {
  const LlamaConfig& c = config_;
  const int64_t n = n_tokens_, C = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim;
  const int64_t F = c.n_ff, QD = c.q_dim(), KD = c.kv_dim();
  const LayerParams& lp = layer_params_[static_cast<size_t>(l)];
  const LayerWeights& lw = base_.weights().layers[static_cast<size_t>(l)];
  TrainParam* attn_norm = lp.attn_norm >= 0 ? &params_[static_cast<size_t>(lp.attn_norm)] : nullptr;
  TrainParam* ffn_norm = lp.ffn_norm >= 0 ? &params_[static_cast<size_t>(lp.ffn_norm)] : nullptr;
  for (auto* v : {&dh_}) Resize(v, n * C);
  for (auto* v : {&d_f1_, &d_f2_}) Resize(v, n * F);
  for (auto* v : {&d_q1_, &d_q2_}) Resize(v, n * QD);
  for (auto* v : {&d_k_, &d_v_}) Resize(v, n * KD);
  auto lin = [&](LoraModule m) { return MakeLinear(l, m, true); };
  auto u = [&](LoraModule m) { return a.u[static_cast<int>(m)].data(); };
  const uint64_t key = dropout_key_;

  // FFN: x_out = x_mid + down(silu(gate(h2)) * up(h2)), h2 = rmsnorm(x_mid).
  ANVIL_RETURN_IF_ERROR(LinearBackward(lin(LoraModule::kDown), dx, a.act.data(),
                                       u(LoraModule::kDown), d_f1_.data(), false, n, key));
  ANVIL_RETURN_IF_ERROR(SwiGluBackward(exec_, {a.gate.data(), a.up.data(), d_f1_.data(),
                                               d_f1_.data(), d_f2_.data(), n * F}));
  ANVIL_RETURN_IF_ERROR(LinearBackward(lin(LoraModule::kGate), d_f1_.data(), a.h2.data(),
                                       u(LoraModule::kGate), dh_.data(), false, n, key));
  ANVIL_RETURN_IF_ERROR(LinearBackward(lin(LoraModule::kUp), d_f2_.data(), a.h2.data(),
                                       u(LoraModule::kUp), dh_.data(), true, n, key));
  ANVIL_RETURN_IF_ERROR(RmsNormBackward(
      exec_, {a.x_mid.data(), ffn_norm != nullptr ? ffn_norm->value.data() : lw.ffn_norm,
              dh_.data(), dx, ffn_norm != nullptr ? ffn_norm->grad.data() : nullptr, n, C,
              c.rms_eps}));

  // Attention: x_mid = x_in + wo(attn(rope(q(h1)), rope(k(h1)), v(h1))), h1 = rmsnorm(x_in).
  ANVIL_RETURN_IF_ERROR(LinearBackward(lin(LoraModule::kO), dx, a.attn.data(), u(LoraModule::kO),
                                       d_q1_.data(), false, n, key));
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  for (int64_t b = 0; b < batch_.size(); ++b) {
    const int64_t s0 = batch_.starts[static_cast<size_t>(b)];
    const int64_t t = batch_.starts[static_cast<size_t>(b) + 1] - s0;
    AttentionBackwardArgs ab;
    ab.q = a.q.data() + s0 * QD;
    ab.k = a.k.data() + s0 * KD;
    ab.v = a.v.data() + s0 * KD;
    ab.out = a.attn.data() + s0 * QD;
    ab.dout = d_q1_.data() + s0 * QD;
    ab.dq = d_q2_.data() + s0 * QD;
    ab.dk = d_k_.data() + s0 * KD;
    ab.dv = d_v_.data() + s0 * KD;
    ab.t = t, ab.h = H, ab.h_kv = Hkv, ab.d = D;
    ab.scale = scale;
    ANVIL_RETURN_IF_ERROR(AttentionBackward(exec_, ab));
  }
  RopeArgs rq{d_q2_.data(), pos_.data(), n, H, D, c.n_rot, c.rope_freq_base, c.rope_neox};
  rq.inverse = true;
  ANVIL_RETURN_IF_ERROR(Rope(exec_, rq));
  RopeArgs rk{d_k_.data(), pos_.data(), n, Hkv, D, c.n_rot, c.rope_freq_base, c.rope_neox};
  rk.inverse = true;
  ANVIL_RETURN_IF_ERROR(Rope(exec_, rk));
  ANVIL_RETURN_IF_ERROR(LinearBackward(lin(LoraModule::kQ), d_q2_.data(), a.h1.data(),
                                       u(LoraModule::kQ), dh_.data(), false, n, key));
  ANVIL_RETURN_IF_ERROR(LinearBackward(lin(LoraModule::kK), d_k_.data(), a.h1.data(),
                                       u(LoraModule::kK), dh_.data(), true, n, key));
  ANVIL_RETURN_IF_ERROR(LinearBackward(lin(LoraModule::kV), d_v_.data(), a.h1.data(),
                                       u(LoraModule::kV), dh_.data(), true, n, key));
  return RmsNormBackward(
      exec_, {x_in, attn_norm != nullptr ? attn_norm->value.data() : lw.attn_norm, dh_.data(), dx,
              attn_norm != nullptr ? attn_norm->grad.data() : nullptr, n, C, c.rms_eps});
}

absl::Status TrainableLlama::Backward() {
  if (!recorded_) {
    return absl::FailedPreconditionError(
        "train backward: the last forward pass kept no activations (record = false or the "
        "adapters were disabled)");
  }
  const LlamaConfig& c = config_;
  const LlamaWeights& w = base_.weights();
  const int64_t n = n_tokens_, C = c.n_embd, V = c.n_vocab;
  const float* dlogits = logits_.data();  // [N or rows][V]
  const bool tied = c.tied_embeddings;
  const int head_index = tied ? token_embd_ : output_;
  TrainParam* head = head_index >= 0 ? &params_[static_cast<size_t>(head_index)] : nullptr;
  const float* e = Weight(tied ? w.token_embd : w.output, head, &scratch_w_);
  const int64_t r = n_logit_rows_;
  Resize(&dh_, n * C);
  if (all_rows_) {
    ANVIL_RETURN_IF_ERROR(GemmNN(exec_, dlogits, e, dh_.data(), n, C, V, 1.0f, 0.0f));
  } else {  // the selected rows' gradients, scattered (added: a row may be listed twice)
    Resize(&dh_rows_, r * C);
    ANVIL_RETURN_IF_ERROR(GemmNN(exec_, dlogits, e, dh_rows_.data(), r, C, V, 1.0f, 0.0f));
    std::fill(dh_.begin(), dh_.begin() + n * C, 0.0f);
    for (int64_t i = 0; i < r; ++i) {
      float* dst = dh_.data() + logit_rows_[static_cast<size_t>(i)] * C;
      const float* src = dh_rows_.data() + i * C;
      for (int64_t j = 0; j < C; ++j) dst[j] += src[j];
    }
  }
  if (head != nullptr) {
    const float* head_in = all_rows_ ? h_final_.data() : h_rows_.data();
    ANVIL_RETURN_IF_ERROR(GemmTN(exec_, dlogits, head_in, head->grad.data(), V, C, r, 1.0f));
  }
  dx_.assign(static_cast<size_t>(n * C), 0.0f);
  TrainParam* out_norm = output_norm_ >= 0 ? &params_[static_cast<size_t>(output_norm_)] : nullptr;
  ANVIL_RETURN_IF_ERROR(RmsNormBackward(
      exec_, {x_final_.data(), out_norm != nullptr ? out_norm->value.data() : w.output_norm,
              dh_.data(), dx_.data(), out_norm != nullptr ? out_norm->grad.data() : nullptr, n, C,
              c.rms_eps}));
  ForwardOptions fo;
  fo.dropout_key = dropout_key_;
  for (int64_t l = c.n_layer - 1; l >= 0; --l) {
    const float* x_in = x_in_[static_cast<size_t>(l)].data();
    const TrainLayerActs* a = &acts_[0];
    if (options_.gradient_checkpointing) {
      // Recompute this layer's activations from its saved input.
      x_recompute_.assign(x_in, x_in + n * C);
      ANVIL_RETURN_IF_ERROR(LayerForward(l, x_recompute_.data(), &acts_[0], fo));
    } else {
      a = &acts_[static_cast<size_t>(l)];
    }
    ANVIL_RETURN_IF_ERROR(LayerBackward(l, dx_.data(), *a, x_in));
  }
  if (token_embd_ >= 0) {
    ANVIL_RETURN_IF_ERROR(EmbeddingBackward(
        exec_, {batch_.tokens.data(), dx_.data(),
                params_[static_cast<size_t>(token_embd_)].grad.data(), n, V, C}));
  }
  return absl::OkStatus();
}

}  // namespace anvil
