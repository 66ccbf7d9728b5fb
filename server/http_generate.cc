// POST /v1/completions and /v1/chat/completions: parse, resolve "base+adapter", tokenize (chat:
// render the model's template), submit one engine request per choice, then answer whole or as
// server-sent events. A stream whose client goes away (a write fails) cancels its requests.
#include <httplib.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "server/http_server.h"
#include "server/openai_errors.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/server_streams.h"

namespace anvil::server {
namespace {

// Completions default to OpenAI's 16 tokens; chat to the server's --default-max-tokens.
constexpr int32_t kCompletionsDefaultMaxTokens = 16;

// One request's choices as they are consumed, for either answer form.
struct Generation {
  ResponseMeta meta;
  CompletionRequest request;
  int64_t prompt_tokens = 0;
  std::unique_ptr<StreamSet> streams;
  std::vector<TokenTimer> timers;
  std::vector<ChoiceResult> choices;
  std::vector<bool> started;               // chat: the role has been sent
  std::vector<std::vector<Event>> pending;  // logprob events whose text is still held back
  UsageCounts usage;
  bool finished = false;
};

absl::StatusOr<std::unique_ptr<Generation>> Begin(InferenceCore* core, bool chat,
                                                  const httplib::Request& req) {
  if (absl::Status s = core->CheckServing(); !s.ok()) return s;
  CompletionLimits limits;
  limits.max_n = core->options().max_n;
  limits.max_top_logprobs = core->options().engine.max_top_logprobs;
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(req.body, chat, limits);
  if (!r.ok()) return r.status();
  auto g = std::make_unique<Generation>();
  g->request = *std::move(r);
  CompletionRequest& cr = g->request;
  absl::StatusOr<std::string> adapter = core->ResolveModelName(cr.model);
  if (!adapter.ok()) return adapter.status();
  cr.params.adapter = *adapter;
  absl::StatusOr<std::vector<int32_t>> prompt = cr.prompt_tokens;
  if (chat) {
    absl::StatusOr<std::string> text = core->RenderChat(cr.messages, &cr.params.stop);
    if (!text.ok()) return text.status();
    prompt = core->TokenizePrompt(*text);
  } else if (cr.prompt_tokens.empty()) {
    prompt = core->TokenizePrompt(cr.prompt);
  }
  if (!prompt.ok()) return prompt.status();
  g->prompt_tokens = static_cast<int64_t>(prompt->size());
  const int32_t default_max =
      chat ? core->options().default_max_tokens : kCompletionsDefaultMaxTokens;
  std::vector<std::shared_ptr<Stream>> streams;
  const absl::Time submitted = absl::Now();
  for (int i = 0; i < cr.n; ++i) {
    GenerationParams p = cr.params;
    if (p.seed.has_value()) *p.seed += static_cast<uint64_t>(i);  // n draws, not n copies
    absl::StatusOr<Request> er = core->BuildRequest(*prompt, p, default_max);
    if (!er.ok()) return er.status();
    absl::StatusOr<std::shared_ptr<Stream>> s = core->Submit(*std::move(er));
    if (!s.ok()) {
      for (auto& earlier : streams) earlier->Cancel();
      return s.status();
    }
    streams.push_back(*std::move(s));
    g->timers.emplace_back(&core->metrics(), submitted);
  }
  g->streams = std::make_unique<StreamSet>(std::move(streams));
  g->meta = NewResponseMeta(chat, cr.model.empty() ? core->model_id() : cr.model);
  g->choices.resize(cr.n);
  g->started.assign(cr.n, false);
  g->pending.resize(cr.n);
  g->usage.prompt = g->prompt_tokens;
  return g;
}

// An end-of-generation event of a request that stops there only brings held-back text (the
// engine's contract): it is no generated token, for logprobs and latency alike.
bool IsTextFlush(InferenceCore* core, const Generation* g, const Event& ev) {
  return !g->request.params.ignore_eos && core->model().tokenizer().IsEndOfGeneration(ev.token);
}

// Records a finished choice; its status when the engine ended it with an error.
absl::Status Finish(InferenceCore* core, Generation* g, int index) {
  const Final& f = g->streams->stream(index).final();
  if (!f.status.ok()) return f.status;
  g->choices[index].finish_reason = FinishReasonString(f.finish);
  g->usage.completion += static_cast<int64_t>(f.tokens.size());
  if (index == 0) g->usage.cached = f.cached_prompt_tokens;
  core->metrics().CountTokens(index == 0 ? f.prompt_tokens : 0,
                              static_cast<int64_t>(f.tokens.size()));
  return absl::OkStatus();
}

void Whole(InferenceCore* core, Generation* g, httplib::Response& res) {
  StreamSet::Item item;
  while (g->streams->Next(&item)) {
    if (item.done) {
      if (absl::Status s = Finish(core, g, item.index); !s.ok()) return ReplyError(core, s, res);
      continue;
    }
    g->choices[item.index].text += item.event.text;
    if (IsTextFlush(core, g, item.event)) continue;
    g->timers[item.index].Token(item.event.time);
    if (g->request.logprobs) g->choices[item.index].events.push_back(std::move(item.event));
  }
  res.status = 200;
  res.set_content(CompletionBody(g->meta, g->choices, g->usage, core->model().tokenizer(),
                                 g->request.logprobs),
                  "application/json");
}

// Writes the SSE events for one item; false when the client is gone.
bool StreamItem(InferenceCore* core, Generation* g, const StreamSet::Item& item,
                httplib::DataSink& sink) {
  const Tokenizer& tok = core->model().tokenizer();
  const bool logprobs = g->request.logprobs;
  const int i = item.index;
  ChunkPart part;
  part.index = i;
  part.first = !g->started[i];
  if (item.done) {
    if (absl::Status s = Finish(core, g, i); !s.ok()) {
      const std::string e = SseData(ErrorJson(s));
      return sink.write(e.data(), e.size());
    }
    part.finish_reason = g->choices[i].finish_reason;
    part.events = std::move(g->pending[i]);
    g->pending[i].clear();
  } else {
    if (!IsTextFlush(core, g, item.event)) {
      g->timers[i].Token(item.event.time);
      if (logprobs) g->pending[i].push_back(item.event);
    }
    // Held-back bytes (a possible stop string, half a character) come with a later token.
    if (item.event.text.empty()) return true;
    part.text = item.event.text;
    part.events = std::move(g->pending[i]);
    g->pending[i].clear();
  }
  g->started[i] = true;
  const std::string chunk = SseData(ChunkBody(g->meta, part, tok, logprobs, g->request.include_usage));
  return sink.write(chunk.data(), chunk.size());
}

void Streamed(InferenceCore* core, std::shared_ptr<Generation> g, httplib::Response& res) {
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [core, g](size_t, httplib::DataSink& sink) {
        StreamSet::Item item;
        if (g->streams->Next(&item)) return StreamItem(core, g.get(), item, sink);
        if (g->request.include_usage) {
          const std::string u = SseData(UsageChunkBody(g->meta, g->usage));
          if (!sink.write(u.data(), u.size())) return false;
        }
        if (!sink.write(kSseDone, sizeof(kSseDone) - 1)) return false;
        g->finished = true;
        sink.done();
        return true;
      },
      // Called once the response is over; !success: the client went away mid-stream.
      [g](bool success) {
        if (!success) g->streams->CancelAll();
      });
}

}  // namespace

void HandleCompletion(InferenceCore* core, bool chat, const httplib::Request& req,
                      httplib::Response& res) {
  absl::StatusOr<std::unique_ptr<Generation>> g = Begin(core, chat, req);
  if (!g.ok()) return ReplyError(core, g.status(), res);
  if ((*g)->request.stream) return Streamed(core, std::shared_ptr<Generation>(std::move(*g)), res);
  Whole(core, g->get(), res);
}

}  // namespace anvil::server
