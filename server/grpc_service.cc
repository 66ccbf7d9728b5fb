#include "server/grpc_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "rpc/status.h"
#include "server/openai_request.h"
#include "server/server_errors.h"

namespace anvil::server {
namespace {

// A streaming call that only finishes with `s`.
class FailedWrite : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  explicit FailedWrite(const absl::Status& s) { Finish(rpc::ToGrpc(s)); }
  void OnDone() override { delete this; }
};

// The call's deadline as an absl::Time (InfiniteFuture when it has none).
absl::Time DeadlineOf(const grpc::CallbackServerContext& ctx) {
  const auto d = ctx.deadline();
  if (d >= std::chrono::system_clock::time_point::max() - std::chrono::hours(24 * 365)) {
    return absl::InfiniteFuture();
  }
  return absl::FromChrono(d);
}

}  // namespace

absl::StatusOr<GenerationParams> ParamsFromProto(const v1::GenerationOptions& o) {
  if (o.max_tokens() < 0) {
    return InvalidParam("max_tokens", absl::StrCat("must be at least 1, got ", o.max_tokens()));
  }
  if (o.top_logprobs() < 0 || (o.top_logprobs() > 0 && !o.logprobs())) {
    return InvalidParam("top_logprobs",
                        absl::StrCat("must be >= 0 and needs logprobs, got ", o.top_logprobs()));
  }
  GenerationParams p;
  if (o.max_tokens() != 0) p.max_tokens = o.max_tokens();
  p.stop.assign(o.stop().begin(), o.stop().end());
  const v1::Sampling& s = o.sampling();
  if (s.has_temperature()) p.temperature = s.temperature();
  if (s.has_top_k()) p.top_k = s.top_k();
  if (s.has_top_p()) p.top_p = s.top_p();
  if (s.has_min_p()) p.min_p = s.min_p();
  if (s.has_repeat_penalty()) p.repeat_penalty = s.repeat_penalty();
  if (s.has_repeat_last_n()) p.repeat_last_n = s.repeat_last_n();
  if (s.has_seed()) p.seed = s.seed();
  p.top_logprobs = o.logprobs() ? o.top_logprobs() : -1;
  p.json_object = o.json_object();
  p.ignore_eos = o.ignore_eos();
  p.adapter = o.adapter();
  return p;
}

grpc::ServerUnaryReactor* InferenceService::Done(grpc::CallbackServerContext* ctx,
                                                 const char* method, const absl::Status& s) {
  core_->metrics().CountRequest("grpc", method, absl::StatusCodeToString(s.code()));
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(rpc::ToGrpc(s));
  return r;
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::StartGeneration(
    grpc::CallbackServerContext* ctx, const char* method,
    absl::StatusOr<std::vector<int32_t>> prompt, GenerationParams params, bool logprobs) {
  absl::Status s = prompt.status();
  if (s.ok() && !params.adapter.empty()) {
    // The same resolution as "base+adapter" over HTTP: NotFound for one not loaded.
    absl::StatusOr<std::string> a = core_->ResolveModelName(
        absl::StrCat(core_->model_id(), "+", params.adapter));
    if (!a.ok()) s = a.status();
  }
  if (s.ok()) {
    absl::StatusOr<Request> r =
        core_->BuildRequest(*std::move(prompt), params, core_->options().default_max_tokens);
    if (r.ok()) {
      r->deadline = DeadlineOf(*ctx);
      const absl::Time submitted = absl::Now();
      const bool stop_at_eog = r->stop_at_eog;
      absl::StatusOr<std::shared_ptr<Stream>> stream = core_->Submit(*std::move(r));
      if (stream.ok()) {
        return NewGenerateReactor(core_, method, *std::move(stream), logprobs, stop_at_eog,
                                  submitted);
      }
      s = stream.status();
    } else {
      s = r.status();
    }
  }
  core_->metrics().CountRequest("grpc", method, absl::StatusCodeToString(s.code()));
  return new FailedWrite(s);
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Generate(
    grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (s.ok() && !request->prompt().empty() && request->prompt_tokens_size() > 0) {
    s = absl::InvalidArgumentError("prompt: give either prompt or prompt_tokens, not both");
  }
  if (!s.ok()) {
    core_->metrics().CountRequest("grpc", "Generate", absl::StatusCodeToString(s.code()));
    return new FailedWrite(s);
  }
  absl::StatusOr<std::vector<int32_t>> prompt =
      request->prompt_tokens_size() > 0
          ? absl::StatusOr<std::vector<int32_t>>(std::vector<int32_t>(
                request->prompt_tokens().begin(), request->prompt_tokens().end()))
          : core_->TokenizePrompt(request->prompt());
  absl::StatusOr<GenerationParams> params = ParamsFromProto(request->options());
  if (!params.ok()) prompt = params.status();
  return StartGeneration(ctx, "Generate", std::move(prompt),
                         params.ok() ? *std::move(params) : GenerationParams(),
                         request->options().logprobs());
}

grpc::ServerWriteReactor<v1::GenerateResponse>* InferenceService::Chat(
    grpc::CallbackServerContext* ctx, const v1::ChatRequest* request) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (!s.ok()) {
    core_->metrics().CountRequest("grpc", "Chat", absl::StatusCodeToString(s.code()));
    return new FailedWrite(s);
  }
  absl::StatusOr<GenerationParams> params = ParamsFromProto(request->options());
  if (!params.ok()) {
    core_->metrics().CountRequest("grpc", "Chat", absl::StatusCodeToString(params.status().code()));
    return new FailedWrite(params.status());
  }
  std::vector<ChatMessage> messages;
  for (const v1::ChatMessage& m : request->messages()) messages.push_back({m.role(), m.content()});
  absl::StatusOr<std::vector<int32_t>> prompt;
  absl::StatusOr<std::string> text = core_->RenderChat(messages, &params->stop);
  prompt = text.ok() ? core_->TokenizePrompt(*text) : text.status();
  return StartGeneration(ctx, "Chat", std::move(prompt), *std::move(params),
                         request->options().logprobs());
}

grpc::ServerUnaryReactor* InferenceService::Tokenize(grpc::CallbackServerContext* ctx,
                                                     const v1::TokenizeRequest* request,
                                                     v1::TokenizeResponse* response) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (s.ok()) {
    const Tokenizer& tok = core_->model().tokenizer();
    for (int32_t t : tok.Encode(request->text(), request->add_special(), request->parse_special())) {
      response->add_tokens(t);
      response->add_pieces(tok.TokenToPiece(t));
    }
  }
  return Done(ctx, "Tokenize", s);
}

grpc::ServerUnaryReactor* InferenceService::Detokenize(grpc::CallbackServerContext* ctx,
                                                       const v1::DetokenizeRequest* request,
                                                       v1::DetokenizeResponse* response) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (s.ok()) {
    const int64_t n_vocab = core_->model().config().n_vocab;
    std::vector<int32_t> ids(request->tokens().begin(), request->tokens().end());
    for (size_t i = 0; i < ids.size() && s.ok(); ++i) {
      if (ids[i] < 0 || ids[i] >= n_vocab) {
        s = absl::InvalidArgumentError(absl::StrCat("tokens[", i, "] = ", ids[i],
                                                    " is outside the vocabulary [0, ", n_vocab,
                                                    ")"));
      }
    }
    if (s.ok()) response->set_text(core_->model().tokenizer().Decode(ids));
  }
  return Done(ctx, "Detokenize", s);
}

grpc::ServerUnaryReactor* InferenceService::Embed(grpc::CallbackServerContext* ctx,
                                                  const v1::EmbedRequest* request,
                                                  v1::EmbedResponse* response) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (s.ok() && request->inputs_size() == 0) s = absl::InvalidArgumentError("inputs: empty");
  if (s.ok() && request->inputs_size() > core_->options().max_embed_inputs) {
    s = absl::InvalidArgumentError(absl::StrCat("inputs: ", request->inputs_size(),
                                                " exceed the limit of ",
                                                core_->options().max_embed_inputs));
  }
  for (int i = 0; s.ok() && i < request->inputs_size(); ++i) {
    absl::StatusOr<std::vector<int32_t>> tokens = core_->TokenizePrompt(request->inputs(i));
    absl::StatusOr<std::vector<float>> v = tokens.ok() ? core_->Embed(*tokens) : tokens.status();
    if (!v.ok()) {
      s = v.status();
      break;
    }
    v1::Embedding* e = response->add_embeddings();
    e->mutable_values()->Assign(v->begin(), v->end());
    e->set_tokens(static_cast<int64_t>(tokens->size()));
  }
  return Done(ctx, "Embed", s);
}

grpc::ServerUnaryReactor* InferenceService::ModelInfo(grpc::CallbackServerContext* ctx,
                                                      const v1::ModelInfoRequest*,
                                                      v1::ModelInfoResponse* response) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (s.ok()) {
    const LlamaModel& m = core_->model();
    const EngineOptions& eo = core_->options().engine;
    response->set_id(core_->model_id());
    response->set_path(core_->options().model_path);
    response->set_architecture(m.config().architecture);
    response->set_n_vocab(m.config().n_vocab);
    response->set_n_embd(m.config().n_embd);
    response->set_n_layer(m.config().n_layer);
    response->set_n_ctx(std::min<int64_t>(eo.n_ctx, m.config().n_ctx_train));
    if (m.chat_template().has_value()) {
      response->set_chat_template(ChatFamilyName(m.chat_template()->family()));
    }
    for (const std::string& a : core_->engine().Adapters()) response->add_adapters(a);
    response->set_max_running(eo.max_running);
    response->set_max_queue(eo.max_queue);
    response->set_max_tokens_limit(eo.max_tokens_limit);
  }
  return Done(ctx, "ModelInfo", s);
}

grpc::ServerUnaryReactor* InferenceService::LoadAdapter(grpc::CallbackServerContext* ctx,
                                                        const v1::LoadAdapterRequest* request,
                                                        v1::LoadAdapterResponse*) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (s.ok()) s = ValidateAdapterName(request->name());
  if (s.ok()) s = core_->engine().LoadAdapter(request->name(), request->path());
  return Done(ctx, "LoadAdapter", s);
}

grpc::ServerUnaryReactor* InferenceService::UnloadAdapter(grpc::CallbackServerContext* ctx,
                                                          const v1::UnloadAdapterRequest* request,
                                                          v1::UnloadAdapterResponse*) {
  absl::Status s = auth_->Check(*ctx);
  if (s.ok()) s = core_->CheckServing();
  if (s.ok()) s = core_->engine().UnloadAdapter(request->name());
  return Done(ctx, "UnloadAdapter", s);
}

}  // namespace anvil::server
