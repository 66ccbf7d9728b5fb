// The training forward pass of TrainableLlama: the same math as the inference Context (notes
// §2.3) but over a batch of whole sequences at once, every product an fp32 GEMM on dequantized
// weights (no activation quantization: gradients need the exact function), keeping the
// activations TrainLayerActs lists for the backward pass.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/gemm.h"
#include "kernels/layer_ops.h"
#include "model/trainable_llama.h"

namespace anvil {
namespace {

// y [n][rows] = alpha * x [n][cols] W^T + beta * y, W [rows][cols].
absl::Status GemmXWt(const ExecContext& ex, const float* x, const float* w, float* y, int64_t n,
                     int64_t rows, int64_t cols, float alpha = 1.0f, float beta = 0.0f) {
  GemmArgs g;
  g.trans_b = true;
  g.m = n, g.n = rows, g.k = cols;
  g.alpha = alpha;
  g.a = x, g.lda = cols;
  g.b = w, g.ldb = cols;
  g.beta = beta;
  g.c = y, g.ldc = rows;
  return Gemm(ex, g);
}

void Resize(std::vector<float>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(static_cast<size_t>(n));
}

}  // namespace

absl::Status TrainableLlama::LinearForward(const Linear& lin, const float* x, float* y, float* u,
                                           int64_t n, uint64_t dropout_key) {
  const float* w = Weight(*lin.base, lin.full, &scratch_w_);
  ANVIL_RETURN_IF_ERROR(GemmXWt(exec_, x, w, y, n, lin.rows, lin.cols));
  if (lin.a == nullptr) return absl::OkStatus();
  // y += scale * B (A dropout(x))
  const float* xa = x;
  if (lin.dropout > 0.0f) {
    Resize(&lora_x_, n * lin.cols);
    LoraDropout(dropout_key, lin.stream, lin.dropout, x, lora_x_.data(), n * lin.cols);
    xa = lora_x_.data();
  }
  Resize(&lora_g_, n * lin.rank);
  float* uu = u != nullptr ? u : lora_g_.data();
  ANVIL_RETURN_IF_ERROR(GemmXWt(exec_, xa, lin.a, uu, n, lin.rank, lin.cols));
  return GemmXWt(exec_, uu, lin.b, y, n, lin.rows, lin.rank, lin.scale, 1.0f);
}

absl::Status TrainableLlama::LayerForward(int64_t l, float* x, TrainLayerActs* a,
                                          const ForwardOptions& fo) {
  const LlamaConfig& c = config_;
  const int64_t n = n_tokens_, C = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim;
  const int64_t F = c.n_ff, QD = c.q_dim(), KD = c.kv_dim();
  const LayerParams& lp = layer_params_[static_cast<size_t>(l)];
  const LayerWeights& lw = base_.weights().layers[static_cast<size_t>(l)];
  const float* attn_norm =
      lp.attn_norm >= 0 ? params_[static_cast<size_t>(lp.attn_norm)].value.data() : lw.attn_norm;
  const float* ffn_norm =
      lp.ffn_norm >= 0 ? params_[static_cast<size_t>(lp.ffn_norm)].value.data() : lw.ffn_norm;
  const int64_t r = options_.method == TrainMethod::kFull ? 0 : options_.lora.rank;
  for (auto* v : {&a->h1, &a->x_mid, &a->h2, &a->tmp}) Resize(v, n * C);
  for (auto* v : {&a->q, &a->attn}) Resize(v, n * QD);
  for (auto* v : {&a->k, &a->v}) Resize(v, n * KD);
  for (auto* v : {&a->gate, &a->up, &a->act}) Resize(v, n * F);
  for (auto& u : a->u) Resize(&u, n * r);
  auto lin = [&](LoraModule m) { return MakeLinear(l, m, fo.with_adapters); };
  auto u = [&](LoraModule m) { return r > 0 ? a->u[static_cast<int>(m)].data() : nullptr; };
  const uint64_t key = fo.dropout_key;

  ANVIL_RETURN_IF_ERROR(RmsNorm(exec_, {x, attn_norm, a->h1.data(), n, C, c.rms_eps}));
  ANVIL_RETURN_IF_ERROR(LinearForward(lin(LoraModule::kQ), a->h1.data(), a->q.data(),
                                      u(LoraModule::kQ), n, key));
  ANVIL_RETURN_IF_ERROR(LinearForward(lin(LoraModule::kK), a->h1.data(), a->k.data(),
                                      u(LoraModule::kK), n, key));
  ANVIL_RETURN_IF_ERROR(LinearForward(lin(LoraModule::kV), a->h1.data(), a->v.data(),
                                      u(LoraModule::kV), n, key));
  ANVIL_RETURN_IF_ERROR(
      Rope(exec_, {a->q.data(), pos_.data(), n, H, D, c.n_rot, c.rope_freq_base, c.rope_neox}));
  ANVIL_RETURN_IF_ERROR(
      Rope(exec_, {a->k.data(), pos_.data(), n, Hkv, D, c.n_rot, c.rope_freq_base, c.rope_neox}));
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  for (int64_t b = 0; b < batch_.size(); ++b) {
    const int64_t s0 = batch_.starts[static_cast<size_t>(b)];
    const int64_t t = batch_.starts[static_cast<size_t>(b) + 1] - s0;
    ANVIL_RETURN_IF_ERROR(CausalAttention(
        exec_, {a->q.data() + s0 * QD, a->k.data() + s0 * KD, a->v.data() + s0 * KD,
                a->attn.data() + s0 * QD, t, 0, H, Hkv, D, scale}));
  }
  ANVIL_RETURN_IF_ERROR(LinearForward(lin(LoraModule::kO), a->attn.data(), a->tmp.data(),
                                      u(LoraModule::kO), n, key));
  ANVIL_RETURN_IF_ERROR(AddInPlace(exec_, x, a->tmp.data(), n * C));
  std::memcpy(a->x_mid.data(), x, sizeof(float) * static_cast<size_t>(n * C));

  ANVIL_RETURN_IF_ERROR(RmsNorm(exec_, {x, ffn_norm, a->h2.data(), n, C, c.rms_eps}));
  ANVIL_RETURN_IF_ERROR(LinearForward(lin(LoraModule::kGate), a->h2.data(), a->gate.data(),
                                      u(LoraModule::kGate), n, key));
  ANVIL_RETURN_IF_ERROR(LinearForward(lin(LoraModule::kUp), a->h2.data(), a->up.data(),
                                      u(LoraModule::kUp), n, key));
  ANVIL_RETURN_IF_ERROR(SwiGlu(exec_, {a->gate.data(), a->up.data(), a->act.data(), n * F}));
  ANVIL_RETURN_IF_ERROR(LinearForward(lin(LoraModule::kDown), a->act.data(), a->tmp.data(),
                                      u(LoraModule::kDown), n, key));
  return AddInPlace(exec_, x, a->tmp.data(), n * C);
}

absl::Status TrainableLlama::Forward(const SequenceBatch& batch, const ForwardOptions& fo) {
  const LlamaConfig& c = config_;
  const int64_t n = batch.n_tokens(), C = c.n_embd, V = c.n_vocab;
  if (batch.size() < 1 || n == 0) return absl::InvalidArgumentError("train forward: empty batch");
  if (batch.starts.front() != 0 || batch.starts.back() != n) {
    return absl::InvalidArgumentError("train forward: batch starts do not cover the tokens");
  }
  for (int64_t b = 0; b < batch.size(); ++b) {
    const int64_t t = batch.starts[static_cast<size_t>(b) + 1] - batch.starts[static_cast<size_t>(b)];
    if (t < 1 || t > c.n_ctx_train) {
      return absl::InvalidArgumentError(absl::StrCat("train forward: sequence ", b, " has ", t,
                                                     " tokens; must be in [1, ", c.n_ctx_train,
                                                     "] (the training context)"));
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (batch.tokens[static_cast<size_t>(i)] < 0 || batch.tokens[static_cast<size_t>(i)] >= V) {
      return absl::InvalidArgumentError(absl::StrCat("train forward: token id ",
                                                     batch.tokens[static_cast<size_t>(i)],
                                                     " at index ", i, " is outside [0, ", V, ")"));
    }
  }
  if (fo.logit_rows != nullptr) {
    for (size_t i = 0; i < fo.logit_rows->size(); ++i) {
      const int64_t r = (*fo.logit_rows)[i];
      if (r < 0 || r >= n) {
        return absl::InvalidArgumentError(absl::StrCat("train forward: logit row ", r,
                                                       " (entry ", i, ") is outside [0, ", n, ")"));
      }
    }
  }
  batch_ = batch;
  n_tokens_ = n;
  recorded_ = false;
  dropout_key_ = fo.dropout_key;
  pos_.resize(static_cast<size_t>(n));
  for (int64_t b = 0; b < batch.size(); ++b) {
    for (int64_t i = batch.starts[static_cast<size_t>(b)]; i < batch.starts[static_cast<size_t>(b) + 1]; ++i) {
      pos_[static_cast<size_t>(i)] = static_cast<int32_t>(i - batch.starts[static_cast<size_t>(b)]);
    }
  }
  const LlamaWeights& w = base_.weights();
  x_final_.resize(static_cast<size_t>(n * C));
  float* x = x_final_.data();
  if (token_embd_ >= 0) {
    ANVIL_RETURN_IF_ERROR(GetRows(exec_, {DType::kF32, params_[static_cast<size_t>(token_embd_)].value.data(),
                                          batch.tokens.data(), x, n, V, C}));
  } else {
    ANVIL_RETURN_IF_ERROR(
        GetRows(exec_, {w.token_embd.type, w.token_embd.data, batch.tokens.data(), x, n, V, C}));
  }
  const bool keep_all = fo.record && !options_.gradient_checkpointing;
  // Never shrink: a no-record forward (DPO's reference, evaluation) between training steps
  // would otherwise free every layer's activations and fault them back in on the next step.
  const size_t need = keep_all ? static_cast<size_t>(c.n_layer) : 1;
  if (acts_.size() < need) acts_.resize(need);
  if (fo.record) x_in_.resize(static_cast<size_t>(c.n_layer));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    if (fo.record) x_in_[static_cast<size_t>(l)].assign(x, x + n * C);
    TrainLayerActs* a = &acts_[keep_all ? static_cast<size_t>(l) : 0];
    ANVIL_RETURN_IF_ERROR(LayerForward(l, x, a, fo));
  }
  const float* out_norm = output_norm_ >= 0
                              ? params_[static_cast<size_t>(output_norm_)].value.data()
                              : w.output_norm;
  h_final_.resize(static_cast<size_t>(n * C));
  ANVIL_RETURN_IF_ERROR(RmsNorm(exec_, {x, out_norm, h_final_.data(), n, C, c.rms_eps}));
  const bool tied = c.tied_embeddings;
  const int head_index = tied ? token_embd_ : output_;
  const float* e = Weight(tied ? w.token_embd : w.output,
                          head_index >= 0 ? &params_[static_cast<size_t>(head_index)] : nullptr,
                          &scratch_w_);
  all_rows_ = fo.logit_rows == nullptr;
  const float* head_in = h_final_.data();
  n_logit_rows_ = n;
  logit_rows_.clear();
  if (!all_rows_) {
    logit_rows_ = *fo.logit_rows;
    n_logit_rows_ = static_cast<int64_t>(logit_rows_.size());
    h_rows_.resize(static_cast<size_t>(n_logit_rows_ * C));
    for (int64_t i = 0; i < n_logit_rows_; ++i) {
      std::memcpy(h_rows_.data() + i * C, h_final_.data() + logit_rows_[static_cast<size_t>(i)] * C,
                  sizeof(float) * static_cast<size_t>(C));
    }
    head_in = h_rows_.data();
  }
  logits_.resize(static_cast<size_t>(n_logit_rows_ * V));
  ANVIL_RETURN_IF_ERROR(GemmXWt(exec_, head_in, e, logits_.data(), n_logit_rows_, V, C));
  recorded_ = fo.record && fo.with_adapters;
  return absl::OkStatus();
}

}  // namespace anvil
