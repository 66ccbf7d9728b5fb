// Engine::Create (option checks, runner choice), Embed and the adapter
// registry.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "server/batch_paged_runner.h"
#include "server/engine_impl.h"

namespace anvil::server {

absl::StatusOr<std::unique_ptr<Engine>>
Engine::Create(const LlamaModel &model, const EngineOptions &options) {
  EngineOptions o = options;
  auto positive = [](const char *name, int64_t v) -> absl::Status {
    if (v > 0)
      return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("engine options: ", name, " = ", v, " must be positive"));
  };
  ANVIL_RETURN_IF_ERROR(positive("threads", o.threads));
  ANVIL_RETURN_IF_ERROR(positive("max_running", o.max_running));
  ANVIL_RETURN_IF_ERROR(positive("max_step_tokens", o.max_step_tokens));
  if (o.prefill_chunk < 2) {
    // A prompt is never split into 1-token chunks (numerics, see
    // EngineImpl::StepOnce).
    return absl::InvalidArgumentError(absl::StrCat(
        "engine options: prefill_chunk = ", o.prefill_chunk, " must be >= 2"));
  }
  if (o.decode_step_prefill < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine options: decode_step_prefill = ", o.decode_step_prefill, " must be >= 2"));
  }
  ANVIL_RETURN_IF_ERROR(positive("kv_block_tokens", o.kv_block_tokens));
  if (o.kv_type != DType::kF32 && o.kv_type != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("engine options: kv_type ",
                                                   DTypeName(o.kv_type), " is not f32 or f16"));
  }
  ANVIL_RETURN_IF_ERROR(positive("n_ctx", o.n_ctx));
  ANVIL_RETURN_IF_ERROR(positive("max_tokens_limit", o.max_tokens_limit));
  if (o.max_queue < 0 || o.kv_blocks < 0 || o.max_prompt_tokens < 0 ||
      o.max_top_logprobs < 0) {
    return absl::InvalidArgumentError(
        "engine options: max_queue, kv_blocks, max_prompt_tokens and "
        "max_top_logprobs must be "
        ">= 0");
  }
  if (o.max_step_tokens <= o.max_running) {
    return absl::InvalidArgumentError(absl::StrCat(
        "engine options: max_step_tokens = ", o.max_step_tokens,
        " must be > max_running = ", o.max_running,
        " (one decode token per sequence and room for a prompt chunk)"));
  }
  const int64_t n_ctx = std::min(o.n_ctx, model.config().n_ctx_train);
  o.n_ctx = n_ctx;
  if (n_ctx < 2)
    return absl::InvalidArgumentError("engine options: n_ctx must be >= 2");
  if (o.max_prompt_tokens == 0 || o.max_prompt_tokens > n_ctx - 1) {
    o.max_prompt_tokens = static_cast<int32_t>(n_ctx - 1);
  }
  if (o.kv_blocks == 0) {
    o.kv_blocks =
        o.max_running * ((n_ctx + o.kv_block_tokens - 1) / o.kv_block_tokens);
  }
  PagedRunnerOptions ro;
  ro.threads = o.threads;
  ro.n_ctx = n_ctx;
  ro.block_tokens = o.kv_block_tokens;
  ro.n_blocks = o.kv_blocks;
  ro.max_step_tokens = o.max_step_tokens;
  ro.prefix_cache = o.prefix_cache;
  ro.kv_type = o.kv_type;
  ro.matmul = o.matmul;
  std::unique_ptr<BatchRunner> runner =
      std::make_unique<PagedRunner>(model, ro);
  auto engine = std::make_unique<EngineImpl>(model, o, std::move(runner));
  engine->Start();
  return engine;
}

absl::StatusOr<std::vector<float>>
EngineImpl::Embed(absl::Span<const int32_t> tokens) {
  const int64_t v = model_.config().n_vocab, c = model_.config().n_embd;
  if (tokens.empty())
    return absl::InvalidArgumentError("tokens: must not be empty");
  if (static_cast<int64_t>(tokens.size()) > n_ctx_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokens: ", tokens.size(), " tokens exceed n_ctx = ", n_ctx_));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= v) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokens[", i, "]: token id ", tokens[i], " is outside [0, ", v, ")"));
    }
  }
  // The final hidden states after the output norm, summed over the rows as they
  // go by.
  std::vector<double> sum(static_cast<size_t>(c), 0.0);
  ContextOptions co;
  co.n_ctx = static_cast<int64_t>(tokens.size());
  co.threads = options_.threads;
  co.matmul = options_.matmul;  // --matmul fast embeds in the same order it generates
  co.observer = [&](const std::string &name, int64_t, const float *data,
                    int64_t rows, int64_t cols) {
    if (name != "result_norm")
      return;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j)
        sum[static_cast<size_t>(j)] += data[r * cols + j];
    }
  };
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<Context> ctx,
                         Context::Create(model_, co));
  // Every row must reach the output norm, so every row gets logits: in chunks,
  // so that the logits buffer stays [64][V] rather than [T][V].
  constexpr size_t kChunk = 64;
  for (size_t b = 0; b < tokens.size(); b += kChunk) {
    ANVIL_RETURN_IF_ERROR(
        ctx->Eval(tokens.subspan(b, std::min(kChunk, tokens.size() - b)),
                  LogitsRequest::All()));
  }
  std::vector<float> out(static_cast<size_t>(c));
  double norm = 0;
  for (int64_t j = 0; j < c; ++j) {
    const double m =
        sum[static_cast<size_t>(j)] / static_cast<double>(tokens.size());
    out[static_cast<size_t>(j)] = static_cast<float>(m);
    norm += m * m;
  }
  norm = std::sqrt(norm);
  if (norm > 0) {
    for (float &x : out)
      x = static_cast<float>(x / norm);
  }
  return out;
}

absl::Status EngineImpl::LoadAdapter(const std::string &name,
                                     const std::string &path) {
  if (name.empty())
    return absl::InvalidArgumentError("adapter name: must not be empty");
  uint64_t key = 0;
  {
    absl::MutexLock lock(&mu_);
    if (adapters_.contains(name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("adapter '", name, "' is already loaded"));
    }
    key = next_adapter_key_++;
  }
  ANVIL_ASSIGN_OR_RETURN(std::shared_ptr<const AdapterWeights> a,
                         LoadAdapterWeights(model_, name, path, key));
  absl::MutexLock lock(&mu_);
  if (adapters_.contains(name)) {
    return absl::AlreadyExistsError(
        absl::StrCat("adapter '", name, "' is already loaded"));
  }
  adapters_[name] = std::move(a);
  return absl::OkStatus();
}

absl::Status EngineImpl::UnloadAdapter(const std::string &name) {
  absl::MutexLock lock(&mu_);
  if (adapters_.erase(name) == 0) {
    return absl::NotFoundError(
        absl::StrCat("adapter '", name, "' is not loaded"));
  }
  return absl::OkStatus();
}

std::vector<std::string> EngineImpl::Adapters() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto &[n, a] : adapters_)
    names.push_back(n);
  return names;
}

} // namespace anvil::server
