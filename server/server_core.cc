#include "server/server_core.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "server/server_errors.h"

namespace anvil::server {
namespace {

constexpr int kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 256;

uint64_t RandomSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

const char* ServingStateName(ServingState s) {
  switch (s) {
    case ServingState::kLoading:
      return "loading";
    case ServingState::kServing:
      return "serving";
    case ServingState::kDraining:
      return "draining";
  }
  return "unknown";
}

std::string ModelIdFromPath(const std::string& path) {
  std::string name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  if (absl::EndsWith(name, ".gguf")) name.resize(name.size() - 5);
  return name;
}

InferenceCore::InferenceCore(ServerOptions options)
    : options_(std::move(options)),
      model_id_(options_.model_id.empty() ? ModelIdFromPath(options_.model_path)
                                          : options_.model_id) {}

// The engine goes first: it references the model.
InferenceCore::~InferenceCore() { engine_.reset(); }

absl::Status InferenceCore::Load() {
  ANVIL_ASSIGN_OR_RETURN(model_, LlamaModel::Load(options_.model_path));
  ANVIL_ASSIGN_OR_RETURN(engine_, Engine::Create(*model_, options_.engine));
  for (const auto& [name, path] : options_.adapters) {
    absl::Status s = engine_->LoadAdapter(name, path);
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("--adapter ", name, "=", path, ": ", s.message()));
    }
  }
  // Release: a transport thread that sees kServing also sees model_ and engine_.
  state_.store(ServingState::kServing, std::memory_order_release);
  return absl::OkStatus();
}

void InferenceCore::Drain() {
  // Only a serving core drains: the server finishes loading before it drains, so engine_ exists.
  ServingState expected = ServingState::kServing;
  if (state_.compare_exchange_strong(expected, ServingState::kDraining)) engine_->Drain();
}

bool InferenceCore::WaitIdle(absl::Duration timeout) {
  if (engine_ == nullptr) return true;
  return engine_->WaitIdle(timeout);
}

absl::Status InferenceCore::CheckServing() const {
  switch (state()) {
    case ServingState::kServing:
      return absl::OkStatus();
    case ServingState::kLoading:
      return absl::UnavailableError("the model is loading; retry shortly");
    case ServingState::kDraining:
      return absl::UnavailableError("the server is shutting down (draining)");
  }
  return absl::InternalError("unknown serving state");
}

absl::StatusOr<std::string> InferenceCore::ResolveModelName(const std::string& name) const {
  if (name.empty() || name == model_id_) return std::string();
  const std::string prefix = model_id_ + "+";
  if (!absl::StartsWith(name, prefix)) {
    return absl::NotFoundError(
        absl::StrCat("model '", name, "' does not exist; this server serves '", model_id_,
                     "' (and '", model_id_, "+ADAPTER' for a loaded adapter)"));
  }
  std::string adapter = name.substr(prefix.size());
  if (state() != ServingState::kLoading) {
    for (const std::string& a : engine_->Adapters()) {
      if (a == adapter) return adapter;
    }
  }
  return absl::NotFoundError(absl::StrCat("adapter '", adapter, "' is not loaded"));
}

std::vector<std::string> InferenceCore::ModelIds() const {
  std::vector<std::string> ids = {model_id_};
  if (state() == ServingState::kLoading) return ids;
  for (const std::string& a : engine_->Adapters()) ids.push_back(absl::StrCat(model_id_, "+", a));
  return ids;
}

absl::StatusOr<std::vector<int32_t>> InferenceCore::TokenizePrompt(const std::string& text) const {
  if (text.empty()) return InvalidParam("prompt", "is empty");
  std::vector<int32_t> tokens =
      model_->tokenizer().Encode(text, /*add_special=*/true, /*parse_special=*/true);
  if (tokens.empty()) return InvalidParam("prompt", "has no tokens");
  return tokens;
}

absl::StatusOr<std::string> InferenceCore::RenderChat(const std::vector<ChatMessage>& messages,
                                                      std::vector<std::string>* stop) const {
  if (messages.empty()) return InvalidParam("messages", "is empty");
  if (!model_->chat_template().has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the model has no usable chat template: ", model_->chat_template_error()));
  }
  const ChatTemplate& tmpl = *model_->chat_template();
  absl::StatusOr<std::string> text = tmpl.Render(messages, /*add_generation_prompt=*/true);
  if (!text.ok()) return InvalidParam("messages", text.status().message());
  for (const std::string& s : tmpl.StopStrings()) stop->push_back(s);
  return text;
}

absl::StatusOr<Request> InferenceCore::BuildRequest(std::vector<int32_t> prompt,
                                                    const GenerationParams& p,
                                                    int32_t default_max_tokens) const {
  const EngineOptions& eo = options_.engine;
  const int64_t n_vocab = model_->config().n_vocab;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= n_vocab) {
      return InvalidParam("prompt", absl::StrCat("token ", i, " is ", prompt[i],
                                                 ", outside the vocabulary [0, ", n_vocab, ")"));
    }
  }
  const int64_t train_ctx = model_->config().n_ctx_train;
  const int64_t n_ctx = train_ctx > 0 ? std::min<int64_t>(eo.n_ctx, train_ctx) : eo.n_ctx;
  const int64_t max_prompt = eo.max_prompt_tokens > 0 ? eo.max_prompt_tokens : n_ctx - 1;
  if (static_cast<int64_t>(prompt.size()) > max_prompt) {
    return InvalidParam("prompt", absl::StrCat(prompt.size(), " prompt tokens exceed the limit of ",
                                               max_prompt));
  }
  Request r;
  r.prompt = std::move(prompt);
  r.max_tokens = p.max_tokens.value_or(default_max_tokens);
  if (r.max_tokens < 1) {
    return InvalidParam("max_tokens", absl::StrCat("must be at least 1, got ", r.max_tokens));
  }
  if (r.max_tokens > eo.max_tokens_limit) {
    return InvalidParam("max_tokens", absl::StrCat(r.max_tokens, " exceeds this server's limit of ",
                                                   eo.max_tokens_limit));
  }
  if (p.stop.size() > kMaxStopStrings) {
    return InvalidParam("stop", absl::StrCat("at most ", kMaxStopStrings, " strings, got ",
                                             p.stop.size()));
  }
  for (const std::string& s : p.stop) {
    if (s.empty() || s.size() > kMaxStopBytes) {
      return InvalidParam("stop", absl::StrCat("each stop string must have 1 to ", kMaxStopBytes,
                                               " bytes, got ", s.size()));
    }
  }
  r.stop = p.stop;
  r.stop_at_eog = !p.ignore_eos;
  SamplingParams& s = r.sampling;
  s.temperature = p.temperature.value_or(1.0f);
  s.top_k = p.top_k.value_or(0);
  s.top_p = p.top_p.value_or(1.0f);
  s.min_p = p.min_p.value_or(0.0f);
  s.repeat_penalty = p.repeat_penalty.value_or(1.0f);
  s.repeat_last_n = p.repeat_last_n.value_or(64);
  s.seed = p.seed.has_value() ? *p.seed : RandomSeed();
  if (!std::isfinite(s.temperature) || s.temperature < 0 || s.temperature > 2) {
    return InvalidParam("temperature", absl::StrCat("must be in [0, 2], got ", s.temperature));
  }
  if (!(s.top_p >= 0 && s.top_p <= 1)) {
    return InvalidParam("top_p", absl::StrCat("must be in [0, 1], got ", s.top_p));
  }
  if (!(s.min_p >= 0 && s.min_p <= 1)) {
    return InvalidParam("min_p", absl::StrCat("must be in [0, 1], got ", s.min_p));
  }
  if (s.top_k < 0 || s.top_k > n_vocab) {
    return InvalidParam("top_k", absl::StrCat("must be in [0, ", n_vocab, "], got ", s.top_k));
  }
  if (!(s.repeat_penalty > 0) || !std::isfinite(s.repeat_penalty)) {
    return InvalidParam("repeat_penalty", absl::StrCat("must be > 0, got ", s.repeat_penalty));
  }
  if (s.repeat_last_n < 0 || s.repeat_last_n > eo.n_ctx) {
    return InvalidParam("repeat_last_n",
                        absl::StrCat("must be in [0, ", eo.n_ctx, "], got ", s.repeat_last_n));
  }
  if (p.top_logprobs > eo.max_top_logprobs) {
    return InvalidParam("top_logprobs", absl::StrCat("at most ", eo.max_top_logprobs, ", got ",
                                                     p.top_logprobs));
  }
  r.top_logprobs = p.top_logprobs;
  r.json_object = p.json_object;
  r.adapter = p.adapter;
  return r;
}

absl::StatusOr<std::shared_ptr<Stream>> InferenceCore::Submit(Request request) {
  ANVIL_RETURN_IF_ERROR(CheckServing());
  ANVIL_ASSIGN_OR_RETURN(std::shared_ptr<Stream> stream, engine_->Submit(std::move(request)));
  absl::MutexLock lock(&streams_mu_);
  // Forget finished streams now and then, so the list stays about as long as the live set.
  if (streams_.size() >= 64) {
    std::erase_if(streams_, [](const std::weak_ptr<Stream>& w) { return w.expired(); });
  }
  streams_.push_back(stream);
  return stream;
}

void InferenceCore::CancelAll() {
  std::vector<std::shared_ptr<Stream>> live;
  {
    absl::MutexLock lock(&streams_mu_);
    for (const auto& w : streams_) {
      if (auto s = w.lock()) live.push_back(std::move(s));
    }
  }
  for (auto& s : live) s->Cancel();
}

absl::StatusOr<std::vector<float>> InferenceCore::Embed(const std::vector<int32_t>& tokens) {
  ANVIL_RETURN_IF_ERROR(CheckServing());
  return engine_->Embed(tokens);
}

std::string InferenceCore::RenderMetrics() {
  const ServingState st = state();
  if (st == ServingState::kLoading) return metrics_.Render(nullptr, ServingStateName(st));
  const EngineStats stats = engine_->Stats();
  return metrics_.Render(&stats, ServingStateName(st));
}

}  // namespace anvil::server
