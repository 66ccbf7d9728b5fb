// The engine's admission, step loop and per-token bookkeeping. The forward pass
// itself is the BatchRunner's business (server/batch_runner.h).
#include "server/engine_impl.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/core/thread_pool.h"
#include "server/engine_sample.h"

namespace anvil::server {

EngineImpl::EngineImpl(const LlamaModel &model, const EngineOptions &options,
                       std::unique_ptr<BatchRunner> runner)
    : model_(model), options_(options), runner_(std::move(runner)) {
  n_ctx_ = std::min(options.n_ctx, model.config().n_ctx_train);
  stats_.batch_size_counts.assign(static_cast<size_t>(options_.max_running), 0);
  stats_.kv_blocks_total = runner_->blocks_total();
  const Tokenizer &tok = model.tokenizer();
  const int32_t v = static_cast<int32_t>(model.config().n_vocab);
  json_vocab_.pieces.resize(static_cast<size_t>(v));
  json_vocab_.eligible.resize(static_cast<size_t>(v));
  json_vocab_.eog.resize(static_cast<size_t>(v));
  for (int32_t id = 0; id < v; ++id) {
    const size_t i = static_cast<size_t>(id);
    json_vocab_.pieces[i] = tok.TokenToPiece(id, /*special=*/true);
    json_vocab_.eog[i] = tok.IsEndOfGeneration(id);
    json_vocab_.eligible[i] =
        tok.Type(id) != TokenType::kControl && !json_vocab_.pieces[i].empty();
  }
}

void EngineImpl::Start() {
  thread_ = std::thread([this] { Loop(); });
}

EngineImpl::~EngineImpl() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable())
    thread_.join();
  // The step thread has ended: everything left ends with Unavailable.
  std::deque<std::unique_ptr<Sequence>> waiting;
  {
    absl::MutexLock lock(&mu_);
    waiting.swap(waiting_);
  }
  const absl::Status down = absl::UnavailableError("engine shut down");
  while (!running_.empty())
    Finish(*running_.back(), down, FinishReason::kCancelled);
  for (auto &s : waiting) {
    running_.push_back(std::move(s));
    Finish(*running_.back(), down, FinishReason::kCancelled);
  }
}

absl::Status EngineImpl::Validate(const Request &r) const {
  const int64_t v = model_.config().n_vocab;
  if (r.prompt.empty())
    return absl::InvalidArgumentError("prompt: must not be empty");
  const int64_t max_prompt = options_.max_prompt_tokens;
  if (static_cast<int64_t>(r.prompt.size()) > max_prompt) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt: ", r.prompt.size(),
                     " tokens exceed max_prompt_tokens = ", max_prompt));
  }
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= v) {
      return absl::InvalidArgumentError(
          absl::StrCat("prompt[", i, "]: token id ", r.prompt[i],
                       " is outside [0, ", v, ")"));
    }
  }
  if (r.max_tokens < 1 || r.max_tokens > options_.max_tokens_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens: ", r.max_tokens, " is outside [1, ",
                     options_.max_tokens_limit, "]"));
  }
  if (r.top_logprobs > options_.max_top_logprobs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "top_logprobs: ", r.top_logprobs,
        " exceeds max_top_logprobs = ", options_.max_top_logprobs));
  }
  for (size_t i = 0; i < r.stop.size(); ++i) {
    if (r.stop[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop[", i, "]: empty stop string"));
    }
  }
  absl::Status s = ValidateSamplingParams(r.sampling);
  if (!s.ok())
    return absl::InvalidArgumentError(absl::StrCat("sampling: ", s.message()));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Stream>> EngineImpl::Submit(Request request) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ || draining_) {
      return absl::UnavailableError(stopping_ ? "engine shut down"
                                              : "engine is draining");
    }
  }
  if (absl::Status s = Validate(request); !s.ok())
    return s;
  const int64_t positions = std::min<int64_t>(
      static_cast<int64_t>(request.prompt.size()) + request.max_tokens, n_ctx_);
  if (!runner_->Fits(positions)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "request needs ", positions, " KV positions; the KV pool (kv_blocks = ",
        runner_->blocks_total(), ") cannot hold them"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->req = std::move(request);
  seq->stream = std::make_shared<StreamImpl>();
  seq->sampler = std::make_unique<Sampler>(seq->req.sampling);
  seq->text = std::make_unique<TextReleaser>(seq->req.stop);
  seq->tokens = seq->req.prompt;
  seq->prompt_len = static_cast<int64_t>(seq->tokens.size());
  seq->final.prompt_tokens = seq->prompt_len;
  seq->final.submitted = absl::Now();
  seq->final.first_token = absl::InfinitePast();
  for (int32_t id : seq->tokens)
    seq->sampler->Accept(id);
  std::shared_ptr<Stream> stream = seq->stream;
  absl::MutexLock lock(&mu_);
  if (stopping_ || draining_) {
    return absl::UnavailableError(stopping_ ? "engine shut down"
                                            : "engine is draining");
  }
  if (!seq->req.adapter.empty()) {
    auto it = adapters_.find(seq->req.adapter);
    if (it == adapters_.end()) {
      return absl::NotFoundError(absl::StrCat("adapter: no adapter named '",
                                              seq->req.adapter, "' is loaded"));
    }
    seq->adapter = it->second;
  }
  if (seq->req.json_object)
    seq->json = std::make_unique<JsonConstraint>(&json_vocab_);
  const int64_t capacity = int64_t{options_.max_running} + options_.max_queue;
  if (in_flight_ >= capacity) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "queue full: ", in_flight_, " requests in flight (max_running = ",
        options_.max_running, " + max_queue = ", options_.max_queue, ")"));
  }
  seq->id = next_id_++;
  ++in_flight_;
  waiting_.push_back(std::move(seq));
  stats_.queued = static_cast<int64_t>(waiting_.size());
  return stream;
}

void EngineImpl::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

bool EngineImpl::WaitIdle(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(
      absl::Condition(
          +[](int64_t *n) { return *n == 0; }, &in_flight_),
      timeout);
}

EngineStats EngineImpl::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

void EngineImpl::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || running_any_ || !waiting_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_)
        return;
    }
    StepOnce();
  }
}

void EngineImpl::Finish(Sequence &s, absl::Status status, FinishReason reason) {
  auto it = std::find_if(
      running_.begin(), running_.end(),
      [&](const std::unique_ptr<Sequence> &p) { return p.get() == &s; });
  std::unique_ptr<Sequence> owned = std::move(*it);
  running_.erase(it);
  if (s.open) {
    runner_->Close(s.id);
    s.open = false;
  }
  // Stats show the freed blocks before the consumer can see the end of its
  // stream; WaitIdle returns only after the stream has ended.
  SyncStats();
  s.final.status = std::move(status);
  s.final.finish = reason;
  s.final.text = std::string(s.text->released());
  s.stream->Finish(std::move(s.final));
  absl::MutexLock lock(&mu_);
  --in_flight_;
}

void EngineImpl::SyncStats() {
  absl::MutexLock lock(&mu_);
  SyncStatsLocked();
}

void EngineImpl::SyncStatsLocked() {
  stats_.queued = static_cast<int64_t>(waiting_.size());
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.kv_blocks_used = runner_->blocks_used();
  stats_.kv_blocks_total = runner_->blocks_total();
  running_any_ = !running_.empty();
}

void EngineImpl::Admit() {
  while (static_cast<int64_t>(running_.size()) < options_.max_running) {
    std::unique_ptr<Sequence> s;
    {
      absl::MutexLock lock(&mu_);
      if (waiting_.empty())
        return;
      s = std::move(waiting_.front());
      waiting_.pop_front();
    }
    const int64_t positions =
        std::min<int64_t>(s->prompt_len + s->req.max_tokens, n_ctx_);
    int64_t cached = 0;
    if (!runner_->Open(s->id, s->tokens, positions,
                       s->adapter ? s->adapter->key : 0, &cached)) {
      absl::MutexLock lock(&mu_);
      waiting_.push_front(std::move(s)); // no room yet: it keeps its place
      return;
    }
    s->open = true;
    s->fed = cached;
    s->final.cached_prompt_tokens = cached;
    {
      absl::MutexLock lock(&mu_);
      stats_.prompt_tokens_total += s->prompt_len;
      stats_.prefix_cache_hit_tokens += cached;
    }
    running_.push_back(std::move(s));
    SyncStats();
  }
}

void EngineImpl::StepOnce() {
  const absl::Time now = absl::Now();
  // Cancelled and expired requests leave first, queued ones included.
  std::vector<std::pair<Sequence *, absl::Status>> leaving;
  for (auto &s : running_) {
    if (s->stream->cancel_requested()) {
      leaving.push_back({s.get(), absl::CancelledError("cancelled")});
    } else if (now > s->req.deadline) {
      leaving.push_back(
          {s.get(), absl::DeadlineExceededError("deadline exceeded")});
    }
  }
  {
    absl::MutexLock lock(&mu_);
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      Sequence &q = **it;
      const bool cancel = q.stream->cancel_requested();
      if (cancel || now > q.req.deadline) {
        running_.push_back(std::move(*it)); // Finish() takes it from running_
        leaving.push_back(
            {running_.back().get(),
             cancel ? absl::CancelledError("cancelled")
                    : absl::DeadlineExceededError("deadline exceeded")});
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto &[s, st] : leaving)
    Finish(*s, st, FinishReason::kCancelled);

  Admit();

  // This step's work: one decode token per generating sequence, then prompt
  // chunks.
  std::vector<StepItem> items;
  std::vector<Sequence *> item_seq;
  int64_t budget = options_.max_step_tokens;
  for (auto &s : running_) {
    if (s->fed >= s->prompt_len && budget > 0) {
      items.push_back(
          {s->id, {s->tokens.data() + s->fed, 1}, true, s->adapter.get()});
      item_seq.push_back(s.get());
      --budget;
    }
  }
  // Prompt tokens: the rest of the step, or next to decodes a bounded share:
  // the step's rows stay within a full batch of decodes plus
  // decode_step_prefill (EngineOptions), so a step with few decodes takes
  // more prompt tokens and no step costs more than a full one does.
  if (!items.empty()) {
    const int64_t decodes = static_cast<int64_t>(items.size());
    budget = std::min<int64_t>(
        budget, std::max<int64_t>(options_.decode_step_prefill,
                                  options_.max_running +
                                      options_.decode_step_prefill - decodes));
  }
  for (auto &s : running_) {
    if (s->fed >= s->prompt_len || budget <= 0)
      continue;
    const int64_t remaining = s->prompt_len - s->fed;
    int64_t n = std::min<int64_t>({remaining, options_.prefill_chunk, budget});
    // A lone last prompt token would run attention in the decode order (T == 1)
    // where a whole-prompt pass uses the prefill order: split so that the last
    // chunk has >= 2 tokens.
    if (n < remaining && remaining - n == 1 && n >= 2)
      --n;
    // Likewise a 1-token chunk cut by the step budget: wait for a step with
    // room for two. (Create guarantees max_step_tokens > max_running, so the
    // first prefilling sequence of a step always has room for two.)
    if (n == 1 && remaining > 1)
      continue;
    const bool last = n == remaining;
    items.push_back({s->id,
                     {s->tokens.data() + s->fed, static_cast<size_t>(n)},
                     last,
                     s->adapter.get()});
    item_seq.push_back(s.get());
    budget -= n;
  }
  int64_t step_tokens = 0, n_logits = 0;
  for (const StepItem &it : items) {
    step_tokens += static_cast<int64_t>(it.tokens.size());
    n_logits += it.want_logits ? 1 : 0;
  }
  if (!items.empty()) {
    const int64_t v = model_.config().n_vocab;
    logits_.resize(static_cast<size_t>(n_logits * v));
    absl::Status st = runner_->Forward(items, logits_.data());
    SyncStats(); // blocks taken by this step, before its tokens reach the
                 // consumers
    if (!st.ok()) {
      for (Sequence *s : item_seq)
        Finish(*s, st, FinishReason::kCancelled);
    } else {
      std::vector<std::pair<Sequence *, float *>> picking;
      int64_t row = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        Sequence &s = *item_seq[i];
        s.fed += static_cast<int64_t>(items[i].tokens.size());
        if (items[i].want_logits)
          picking.emplace_back(&s, logits_.data() + (row++) * v);
      }
      std::vector<Pick> picks(picking.size());
      ParallelFor(runner_->pool(), static_cast<int64_t>(picking.size()), 1,
                  [&](int64_t b, int64_t e, int) {
                    for (int64_t j = b; j < e; ++j) {
                      PickNext(*picking[j].first, picking[j].second, &picks[j]);
                    }
                  });
      for (size_t j = 0; j < picking.size(); ++j)
        EmitNext(*picking[j].first, std::move(picks[j]));
    }
  }
  PublishStats(step_tokens, static_cast<int64_t>(items.size()));
}

void EngineImpl::PickNext(Sequence &s, float *logits, Pick *pick) {
  const int64_t v = model_.config().n_vocab;
  Event &ev = pick->ev;
  // Logprobs come from the raw logits, before any constraint.
  std::vector<float> raw;
  if (s.req.top_logprobs >= 0 && s.json)
    raw.assign(logits, logits + v);
  if (s.json && s.json->Mask(logits) == 0) {
    pick->no_continuation = true;
    return;
  }
  const int32_t id = s.sampler->Sample(logits, v);
  s.sampler->Accept(id);
  ev.time = absl::Now();
  if (s.req.top_logprobs >= 0) {
    Logprobs(raw.empty() ? logits : raw.data(), v, id, s.req.top_logprobs,
             &ev.logprob, &ev.top);
  }
  ev.token = id;
}

void EngineImpl::EmitNext(Sequence &s, Pick pick) {
  if (pick.no_continuation) {
    Finish(s,
           absl::InternalError(
               "json_object: no token can continue the JSON output"),
           FinishReason::kStop);
    return;
  }
  const Tokenizer &tok = model_.tokenizer();
  Event ev = std::move(pick.ev);
  const int32_t id = ev.token;
  const bool eog = s.req.stop_at_eog && tok.IsEndOfGeneration(id);
  // An end-of-generation token is not part of the output; text still held back
  // is released with an event carrying that token (only when there is such
  // text).
  if (eog && !(s.json && !s.json->complete())) {
    ev.text = s.text->Flush();
    if (!ev.text.empty())
      s.stream->Push(std::move(ev));
    Finish(s, absl::OkStatus(), FinishReason::kEndOfGeneration);
    return;
  }
  if (s.final.first_token == absl::InfinitePast())
    s.final.first_token = ev.time;
  const std::string piece = tok.TokenToPiece(id, /*special=*/true);
  bool stopped = false;
  ev.text = s.text->Add(piece, &stopped);
  if (s.json)
    s.json->Accept(piece);
  s.tokens.push_back(id);
  s.final.tokens.push_back(id);
  ++s.generated;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.generated_tokens_total;
  }
  bool done = stopped;
  FinishReason reason = FinishReason::kStop;
  if (!done && s.json && s.json->complete())
    done = true;
  if (!done && (s.generated >= s.req.max_tokens || s.fed >= n_ctx_)) {
    done = true;
    reason = FinishReason::kLength;
  }
  if (done && !stopped)
    ev.text += s.text->Flush();
  s.stream->Push(std::move(ev));
  if (done)
    Finish(s, absl::OkStatus(), reason);
}

void EngineImpl::PublishStats(int64_t step_tokens, int64_t step_seqs) {
  absl::MutexLock lock(&mu_);
  if (step_seqs > 0) {
    ++stats_.steps;
    stats_.step_tokens_total += step_tokens;
    const int64_t i = std::min<int64_t>(step_seqs, options_.max_running) - 1;
    ++stats_.batch_size_counts[static_cast<size_t>(i)];
  }
  SyncStatsLocked();
}

} // namespace anvil::server
