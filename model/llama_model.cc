// Loading a llama-family model and its batched forward pass (notes §2.3): embedding, per layer
// RMSNorm -> Q/K/V -> RoPE (NORM) -> causal GQA over the KV cache -> output projection ->
// residual -> RMSNorm -> SwiGLU FFN -> residual; final RMSNorm and the (tied) output matrix.
#include "model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/layer_ops.h"
#include "kernels/matmul.h"

namespace anvil {

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Load(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> f, gguf::GgufFile::Open(path));
  return FromFile(std::move(f));
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::FromFile(
    std::unique_ptr<gguf::GgufFile> f) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  ANVIL_ASSIGN_OR_RETURN(m->config_, ReadLlamaConfig(*f));
  ANVIL_ASSIGN_OR_RETURN(m->weights_, BindLlamaWeights(*f, m->config_));
  ANVIL_ASSIGN_OR_RETURN(VocabData vocab, LoadVocab(*f));
  if (static_cast<int64_t>(vocab.tokens.size()) != m->config_.n_vocab) {
    return absl::InvalidArgumentError(absl::StrCat(
        f->name(), ": tokenizer has ", vocab.tokens.size(), " tokens but token_embd.weight has ",
        m->config_.n_vocab, " rows"));
  }
  ANVIL_ASSIGN_OR_RETURN(m->tokenizer_, Tokenizer::Create(std::move(vocab)));
  if (f->Has("tokenizer.chat_template")) {
    ANVIL_ASSIGN_OR_RETURN(std::string source, f->GetString("tokenizer.chat_template"));
    const Tokenizer& tok = *m->tokenizer_;
    auto bos = tok.bos_id() >= 0 ? std::string(tok.TokenText(tok.bos_id())) : std::string();
    auto eos = tok.eos_id() >= 0 ? std::string(tok.TokenText(tok.eos_id())) : std::string();
    absl::StatusOr<ChatTemplate> t = ChatTemplate::FromJinja(source, bos, eos);
    if (t.ok()) {
      m->chat_template_ = *std::move(t);
    } else {
      m->chat_template_error_ = std::string(t.status().message());
    }
  } else {
    m->chat_template_error_ = "the model has no tokenizer.chat_template";
  }
  m->file_ = std::move(f);
  return m;
}

Context::Context(const LlamaModel& model, const ContextOptions& options)
    : model_(model), options_(options) {}

Context::~Context() = default;

absl::StatusOr<std::unique_ptr<Context>> Context::Create(const LlamaModel& model,
                                                         const ContextOptions& options) {
  const LlamaConfig& c = model.config();
  if (options.n_ctx <= 0 || options.n_batch <= 0 || options.threads <= 0) {
    return absl::InvalidArgumentError("context: n_ctx, n_batch and threads must be positive");
  }
  std::unique_ptr<Context> ctx(new Context(model, options));
  ctx->n_ctx_ = std::min(options.n_ctx, c.n_ctx_train);
  ctx->n_vocab_ = c.n_vocab;
  ctx->options_.n_batch = std::min(options.n_batch, ctx->n_ctx_);
  ctx->pool_ = std::make_unique<ThreadPool>(options.threads);
  ctx->exec_.backend = options.backend;
  ctx->exec_.pool = ctx->pool_.get();
  ctx->exec_.matmul = options.matmul;
  const size_t kv = static_cast<size_t>(ctx->n_ctx_ * c.kv_dim());
  ctx->k_cache_.assign(static_cast<size_t>(c.n_layer), std::vector<float>(kv));
  ctx->v_cache_.assign(static_cast<size_t>(c.n_layer), std::vector<float>(kv));
  const size_t b = static_cast<size_t>(ctx->options_.n_batch);
  ctx->x_.resize(b * c.n_embd);
  ctx->h_.resize(b * c.n_embd);
  ctx->q_.resize(b * c.q_dim());
  ctx->k_.resize(b * c.kv_dim());
  ctx->v_.resize(b * c.kv_dim());
  ctx->attn_.resize(b * c.q_dim());
  ctx->proj_.resize(b * c.n_embd);
  ctx->gate_.resize(b * c.n_ff);
  ctx->up_.resize(b * c.n_ff);
  ctx->pos_.resize(b);
  return ctx;
}

void Context::Truncate(int64_t n) { n_past_ = std::clamp<int64_t>(n, 0, n_past_); }

absl::Status Context::Eval(absl::Span<const int32_t> tokens, LogitsRequest request) {
  const int64_t t = static_cast<int64_t>(tokens.size());
  if (t == 0) return absl::InvalidArgumentError("eval: no tokens");
  if (n_past_ + t > n_ctx_) {
    return absl::ResourceExhaustedError(absl::StrCat("eval: ", n_past_, " cached + ", t,
                                                     " new tokens exceed the context of ",
                                                     n_ctx_, " positions"));
  }
  for (int64_t i = 0; i < t; ++i) {
    if (tokens[i] < 0 || tokens[i] >= n_vocab_) {
      return absl::InvalidArgumentError(absl::StrCat("eval: token id ", tokens[i], " at index ",
                                                     i, " is outside [0, ", n_vocab_, ")"));
    }
  }
  int64_t first = t - 1;
  if (request.mode == LogitsRequest::Mode::kAll) first = 0;
  if (request.mode == LogitsRequest::Mode::kFrom) first = std::clamp<int64_t>(request.from, 0, t);
  n_logits_ = t - first;
  logits_.resize(static_cast<size_t>(n_logits_ * n_vocab_));

  const int64_t saved_past = n_past_;
  for (int64_t b = 0; b < t; b += options_.n_batch) {
    const int64_t e = std::min(t, b + options_.n_batch);
    // Output rows of this chunk, relative to the chunk.
    const int64_t ob = std::clamp(first - b, int64_t{0}, e - b);
    const int64_t oe = e - b;
    float* out = logits_.data() + std::max<int64_t>(0, b - first) * n_vocab_;
    absl::Status s = EvalChunk(tokens.subspan(b, e - b), ob, oe, out);
    if (!s.ok()) {
      n_past_ = saved_past;
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Context::EvalChunk(absl::Span<const int32_t> tokens, int64_t out_begin,
                                int64_t out_end, float* logits_out) {
  const LlamaConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  const ExecContext& ex = exec_;
  const int64_t t = static_cast<int64_t>(tokens.size());
  const int64_t C = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim, F = c.n_ff;
  const int64_t past = n_past_;
  for (int64_t i = 0; i < t; ++i) pos_[i] = static_cast<int32_t>(past + i);

  // x [T][C] = embedding rows.
  ANVIL_RETURN_IF_ERROR(GetRows(ex, {w.token_embd.type, w.token_embd.data, tokens.data(),
                                     x_.data(), t, w.token_embd.rows, C}));
  auto matmul = [&](const WeightMatrix& m, const float* in, float* out, int64_t rows) {
    return MatMul(ex, {m.type, m.data, in, out, rows, m.rows, m.cols});
  };
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  auto observe = [&](const char* name, int64_t layer, const float* data, int64_t rows,
                     int64_t cols) {
    if (options_.observer) options_.observer(name, layer, data, rows, cols);
  };
  observe("inp_embd", -1, x_.data(), t, C);

  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const bool last = l == c.n_layer - 1;
    // At the last layer only the rows that produce logits go past attention (as llama.cpp).
    const int64_t r0 = last ? out_begin : 0;
    const int64_t rn = last ? out_end - out_begin : t;

    ANVIL_RETURN_IF_ERROR(RmsNorm(ex, {x_.data(), lw.attn_norm, h_.data(), t, C, c.rms_eps}));
    observe("attn_norm", l, h_.data(), t, C);
    ANVIL_RETURN_IF_ERROR(MatMulSameInput(
        ex, h_.data(), t, {{&lw.wq, q_.data()}, {&lw.wk, k_.data()}, {&lw.wv, v_.data()}}));
    observe("Qcur", l, q_.data(), t, H * D);
    observe("Kcur", l, k_.data(), t, Hkv * D);
    observe("Vcur", l, v_.data(), t, Hkv * D);
    ANVIL_RETURN_IF_ERROR(
        Rope(ex, {q_.data(), pos_.data(), t, H, D, c.n_rot, c.rope_freq_base, c.rope_neox}));
    ANVIL_RETURN_IF_ERROR(
        Rope(ex, {k_.data(), pos_.data(), t, Hkv, D, c.n_rot, c.rope_freq_base, c.rope_neox}));
    observe("Qcur_rope", l, q_.data(), t, H * D);
    observe("Kcur_rope", l, k_.data(), t, Hkv * D);
    // Append K/V [T][Hkv][D] to the cache rows past..past+T-1.
    float* kc = k_cache_[static_cast<size_t>(l)].data();
    float* vc = v_cache_[static_cast<size_t>(l)].data();
    std::memcpy(kc + past * Hkv * D, k_.data(), sizeof(float) * t * Hkv * D);
    std::memcpy(vc + past * Hkv * D, v_.data(), sizeof(float) * t * Hkv * D);
    if (rn == 0) continue;  // no logits wanted from this chunk: the cache is all it needed

    // Attention and its output projection run over all T rows even at the last layer, as in
    // llama.cpp (which selects the output rows after wo): the summation order of its F32
    // KQ*V and F32 matmuls depends on the number of rows, so this keeps results bit-identical.
    ANVIL_RETURN_IF_ERROR(Attention(ex, {q_.data(), kc, vc, attn_.data(), t, past, H, Hkv, D,
                                         scale}));
    ANVIL_RETURN_IF_ERROR(matmul(lw.wo, attn_.data(), proj_.data(), t));
    if (r0 != 0) {
      std::memmove(attn_.data(), attn_.data() + r0 * H * D, sizeof(float) * rn * H * D);
      std::memmove(proj_.data(), proj_.data() + r0 * C, sizeof(float) * rn * C);
      std::memmove(x_.data(), x_.data() + r0 * C, sizeof(float) * rn * C);
    }
    observe("kqv_out", l, attn_.data(), rn, H * D);
    observe("attn_out", l, proj_.data(), rn, C);
    ANVIL_RETURN_IF_ERROR(AddInPlace(ex, x_.data(), proj_.data(), rn * C));

    observe("ffn_inp", l, x_.data(), rn, C);
    ANVIL_RETURN_IF_ERROR(RmsNorm(ex, {x_.data(), lw.ffn_norm, h_.data(), rn, C, c.rms_eps}));
    observe("ffn_norm", l, h_.data(), rn, C);
    ANVIL_RETURN_IF_ERROR(
        MatMulSameInput(ex, h_.data(), rn, {{&lw.w_gate, gate_.data()}, {&lw.w_up, up_.data()}}));
    observe("ffn_gate", l, gate_.data(), rn, F);
    observe("ffn_up", l, up_.data(), rn, F);
    ANVIL_RETURN_IF_ERROR(SwiGlu(ex, {gate_.data(), up_.data(), gate_.data(), rn * F}));
    observe("ffn_swiglu", l, gate_.data(), rn, F);
    ANVIL_RETURN_IF_ERROR(matmul(lw.w_down, gate_.data(), proj_.data(), rn));
    observe("ffn_out", l, proj_.data(), rn, C);
    ANVIL_RETURN_IF_ERROR(AddInPlace(ex, x_.data(), proj_.data(), rn * C));
    observe("l_out", l, x_.data(), rn, C);
  }
  n_past_ = past + t;
  const int64_t rn = out_end - out_begin;
  if (rn == 0) return absl::OkStatus();
  // After the last layer x_ holds only the output rows.
  ANVIL_RETURN_IF_ERROR(RmsNorm(ex, {x_.data(), w.output_norm, h_.data(), rn, C, c.rms_eps}));
  observe("result_norm", -1, h_.data(), rn, C);
  ANVIL_RETURN_IF_ERROR(matmul(w.output, h_.data(), logits_out, rn));
  observe("result_output", -1, logits_out, rn, n_vocab_);
  return absl::OkStatus();
}

}  // namespace anvil
