// The write reactor behind Generate and Chat. The engine's wakeup (its step thread) or a
// finished write (a gRPC thread) pumps the stream: every event available is packed into one
// message, so a slow client gets fewer, larger messages instead of a backlog. The last message
// carries finish_reason and usage. Cancellation (client gone, deadline) cancels the engine
// request, whose stream then ends and finishes the call.
//
// Locking: Shared::mu only guards who pumps (busy/again) and whether the reactor still exists;
// it is never held across StartWrite or Finish. While `busy` is set exactly one thread runs
// Pump, and OnDone cannot run before the Finish that Pump itself calls last.
#include <memory>
#include <string>

#include "absl/synchronization/mutex.h"
#include "rpc/status.h"
#include "server/grpc_service.h"

namespace anvil::server {
namespace {

class GenerateReactor;

struct Shared {
  absl::Mutex mu;
  GenerateReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;  // null after OnDone
  bool busy ABSL_GUARDED_BY(mu) = false;   // a thread is pumping or a write is in flight
  bool again ABSL_GUARDED_BY(mu) = false;  // a wakeup came while busy
};

class GenerateReactor : public grpc::ServerWriteReactor<v1::GenerateResponse> {
 public:
  GenerateReactor(InferenceCore* core, const char* method, std::shared_ptr<Stream> stream,
                  bool logprobs, bool stop_at_eog, absl::Time submitted)
      : core_(core),
        method_(method),
        stream_(std::move(stream)),
        logprobs_(logprobs),
        stop_at_eog_(stop_at_eog),
        timer_(&core->metrics(), submitted),
        shared_(std::make_shared<Shared>()) {
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = this;
    }
    stream_->SetWakeup([shared = shared_] { Wake(shared.get()); });
    Wake(shared_.get());  // events may have arrived before the wakeup was set
  }

  void OnWriteDone(bool ok) override {
    if (!ok && !broken_) {
      broken_ = true;  // the client is gone: stop generating, finish when the stream ends
      stream_->Cancel();
    }
    Pump();
  }

  void OnCancel() override { stream_->Cancel(); }

  void OnDone() override {
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->reactor = nullptr;
    }
    delete this;
  }

  // Runs Pump unless another thread is in it (then that one goes round again).
  static void Wake(Shared* shared) {
    GenerateReactor* r;
    {
      absl::MutexLock lock(&shared->mu);
      if (shared->reactor == nullptr) return;
      if (shared->busy) {
        shared->again = true;
        return;
      }
      shared->busy = true;
      r = shared->reactor;
    }
    r->Pump();
  }

 private:
  // Called with busy set. Leaves it set while a write is in flight and after Finish.
  void Pump() {
    for (;;) {
      msg_.Clear();
      Event ev;
      Stream::Poll p;
      while ((p = stream_->TryNext(&ev)) == Stream::Poll::kEvent) Add(ev);
      if (p == Stream::Poll::kDone) {
        const Final& f = stream_->final();
        core_->metrics().CountRequest("grpc", method_, absl::StatusCodeToString(f.status.code()));
        if (!f.status.ok() || broken_) {
          Finish(rpc::ToGrpc(f.status.ok() ? absl::CancelledError("client went away")
                                           : f.status));
          return;
        }
        msg_.set_finish_reason(f.finish == FinishReason::kLength ? v1::FINISH_REASON_LENGTH
                                                                  : v1::FINISH_REASON_STOP);
        v1::Usage* u = msg_.mutable_usage();
        u->set_prompt_tokens(f.prompt_tokens);
        u->set_completion_tokens(static_cast<int64_t>(f.tokens.size()));
        u->set_cached_prompt_tokens(f.cached_prompt_tokens);
        core_->metrics().CountTokens(f.prompt_tokens, static_cast<int64_t>(f.tokens.size()));
        StartWriteAndFinish(&msg_, grpc::WriteOptions(), grpc::Status::OK);
        return;
      }
      if ((msg_.tokens_size() > 0 || !msg_.text().empty()) && !broken_) {
        StartWrite(&msg_);  // OnWriteDone pumps again
        return;
      }
      absl::MutexLock lock(&shared_->mu);
      if (!shared_->again) {
        shared_->busy = false;
        return;
      }
      shared_->again = false;
    }
  }

  void Add(const Event& ev) {
    const Tokenizer& tok = core_->model().tokenizer();
    msg_.mutable_text()->append(ev.text);
    // The end-of-generation token only brings held-back text: it is not a generated token.
    if (stop_at_eog_ && tok.IsEndOfGeneration(ev.token)) return;
    timer_.Token(ev.time);
    v1::GeneratedToken* t = msg_.add_tokens();
    t->set_id(ev.token);
    t->set_piece(tok.TokenToPiece(ev.token));
    if (logprobs_) {
      t->set_logprob(ev.logprob);
      for (const TokenLogprob& alt : ev.top) {
        v1::TopLogprob* a = t->add_top_logprobs();
        a->set_token(alt.token);
        a->set_piece(tok.TokenToPiece(alt.token));
        a->set_logprob(alt.logprob);
      }
    }
  }

  InferenceCore* const core_;
  const char* const method_;
  std::shared_ptr<Stream> stream_;
  const bool logprobs_;
  const bool stop_at_eog_;
  TokenTimer timer_;
  std::shared_ptr<Shared> shared_;
  v1::GenerateResponse msg_;  // owned by gRPC between StartWrite and OnWriteDone
  bool broken_ = false;
};

}  // namespace

grpc::ServerWriteReactor<v1::GenerateResponse>* NewGenerateReactor(
    InferenceCore* core, const char* method, std::shared_ptr<Stream> stream, bool logprobs,
    bool stop_at_eog, absl::Time submitted) {
  return new GenerateReactor(core, method, std::move(stream), logprobs, stop_at_eog, submitted);
}

}  // namespace anvil::server
