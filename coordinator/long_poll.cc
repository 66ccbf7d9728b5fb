// LongPollReactor and FinishNow (declared in services.h): the waiting half of PollTask and
// Rendezvous Get/Wait.
#include <utility>

#include "coordinator/services.h"
#include "rpc/status.h"

namespace anvil::coordinator {

grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(rpc::ToGrpc(status));
  return reactor;
}

absl::StatusOr<bool> LongPollReactor::TryOnce() {
  absl::MutexLock lock(&attempt_mu_);
  return attempt_();
}

void LongPollReactor::FinishOnce(const absl::Status& status) {
  {
    absl::MutexLock lock(&mu_);
    if (finished_) return;
    finished_ = true;
  }
  Finish(rpc::ToGrpc(status));
}

void LongPollReactor::Ref() {
  absl::MutexLock lock(&mu_);
  ++refs_;
}

void LongPollReactor::Unref() {
  bool last;
  {
    absl::MutexLock lock(&mu_);
    last = --refs_ == 0;
  }
  if (last) delete this;
}

void LongPollReactor::Step(bool timed_out) {
  Ref();
  StepPinned(timed_out);
  Unref();
}

void LongPollReactor::StepPinned(bool timed_out) {
  absl::StatusOr<bool> done = TryOnce();
  if (!done.ok()) return FinishOnce(done.status());
  if (*done) return FinishOnce(absl::OkStatus());
  if (timed_out || absl::Now() >= deadline_) return FinishOnce(on_timeout_);
  // Register first, then look again: a change made between the first look and the Add would
  // otherwise notify nobody and the call would sleep to its deadline.
  const uint64_t id = hub_->Add(key_, deadline_, [this](WakeReason r) { OnWake(r); });
  done = TryOnce();
  if (!done.ok() || *done) {
    // When Remove fails the callback owns the call now (it tries again and finishes).
    if (!hub_->Remove(id)) return;
    return FinishOnce(done.ok() ? absl::OkStatus() : done.status());
  }
  absl::MutexLock lock(&mu_);
  waiter_id_ = id;  // may be stale if the callback already ran: Remove(stale) is a no-op
}

void LongPollReactor::OnWake(WakeReason reason) {
  bool cancelled;
  {
    absl::MutexLock lock(&mu_);
    waiter_id_ = 0;
    cancelled = cancelled_;
  }
  if (cancelled) return FinishOnce(absl::CancelledError("call cancelled"));
  if (reason == WakeReason::kShutdown) {
    return FinishOnce(absl::UnavailableError("the coordinator is shutting down"));
  }
  Step(reason == WakeReason::kTimeout);
}

void LongPollReactor::OnCancel() {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    id = waiter_id_;
  }
  if (id != 0 && hub_->Remove(id)) FinishOnce(absl::CancelledError("call cancelled"));
}

}  // namespace anvil::coordinator
