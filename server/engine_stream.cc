#include "server/engine_stream.h"

#include <utility>

namespace anvil::server {

bool StreamImpl::Next(Event* event) {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](StreamImpl* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
        return !s->events_.empty() || s->done_;
      },
      this));
  if (events_.empty()) return false;
  *event = std::move(events_.front());
  events_.pop_front();
  return true;
}

Stream::Poll StreamImpl::TryNext(Event* event) {
  absl::MutexLock lock(&mu_);
  if (!events_.empty()) {
    *event = std::move(events_.front());
    events_.pop_front();
    return Poll::kEvent;
  }
  return done_ ? Poll::kDone : Poll::kPending;
}

void StreamImpl::SetWakeup(std::function<void()> wakeup) {
  absl::MutexLock lock(&mu_);
  wakeup_ = std::move(wakeup);
}

void StreamImpl::Push(Event event) {
  {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }
  Wake();
}

void StreamImpl::Finish(Final final) {
  {
    absl::MutexLock lock(&mu_);
    if (done_) return;
    final_ = std::move(final);
    done_ = true;
  }
  Wake();
}

bool StreamImpl::done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

void StreamImpl::Wake() {
  std::function<void()> w;
  {
    absl::MutexLock lock(&mu_);
    w = wakeup_;
  }
  if (w) w();
}

}  // namespace anvil::server
