#include "server/server_streams.h"

#include "absl/synchronization/mutex.h"

namespace anvil::server {

// Shared with the wakeup callbacks, which the engine may call after the set is gone.
struct StreamSet::Signal {
  absl::Mutex mu;
  int64_t count ABSL_GUARDED_BY(mu) = 0;
};

StreamSet::StreamSet(std::vector<std::shared_ptr<Stream>> streams)
    : signal_(std::make_shared<Signal>()),
      streams_(std::move(streams)),
      done_(streams_.size(), false),
      remaining_(static_cast<int>(streams_.size())) {
  for (auto& s : streams_) {
    s->SetWakeup([sig = signal_] {
      absl::MutexLock lock(&sig->mu);
      ++sig->count;
    });
  }
}

StreamSet::~StreamSet() { CancelAll(); }

void StreamSet::CancelAll() {
  for (size_t i = 0; i < streams_.size(); ++i) {
    if (!done_[i]) streams_[i]->Cancel();
  }
}

bool StreamSet::Next(Item* item, absl::Time deadline) {
  while (remaining_ > 0) {
    int64_t seen;
    {
      absl::MutexLock lock(&signal_->mu);
      seen = signal_->count;
    }
    // Poll every unfinished stream once, starting after the last one that answered.
    for (size_t k = 0; k < streams_.size(); ++k) {
      const size_t i = (next_ + k) % streams_.size();
      if (done_[i]) continue;
      Event ev;
      const Stream::Poll p = streams_[i]->TryNext(&ev);
      if (p == Stream::Poll::kPending) continue;
      next_ = (i + 1) % streams_.size();
      item->index = static_cast<int>(i);
      if (p == Stream::Poll::kDone) {
        done_[i] = true;
        --remaining_;
        item->done = true;
        return true;
      }
      item->done = false;
      item->event = std::move(ev);
      return true;
    }
    // Nothing ready: sleep until a wakeup arrives after `seen` (one that came during the poll
    // has already moved the count, so it is not lost).
    absl::MutexLock lock(&signal_->mu);
    auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(signal_->mu) {
      return signal_->count != seen;
    };
    if (!signal_->mu.AwaitWithDeadline(absl::Condition(&changed), deadline)) return false;
  }
  return false;
}

}  // namespace anvil::server
