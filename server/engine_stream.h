// The engine's side of a Stream: a queue of events filled by the step thread and drained by the
// consumer (blocking Next or TryNext + wakeup), a cancel flag the step thread polls, and the
// Final record, valid once the stream is done.
#ifndef ANVIL_SERVER_ENGINE_STREAM_H_
#define ANVIL_SERVER_ENGINE_STREAM_H_

#include <atomic>
#include <deque>
#include <functional>

#include "absl/synchronization/mutex.h"
#include "server/engine.h"

namespace anvil::server {

class StreamImpl final : public Stream {
 public:
  StreamImpl() = default;

  // Consumer side.
  bool Next(Event* event) override;
  Poll TryNext(Event* event) override;
  void SetWakeup(std::function<void()> wakeup) override;
  void Cancel() override { cancelled_.store(true, std::memory_order_relaxed); }
  const Final& final() const override { return final_; }

  // Engine side.
  bool cancel_requested() const { return cancelled_.load(std::memory_order_relaxed); }
  void Push(Event event);
  // Ends the stream: `final` becomes final(); no Push after this.
  void Finish(Final final);
  bool done() const;

 private:
  void Wake();

  std::atomic<bool> cancelled_{false};
  mutable absl::Mutex mu_;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> wakeup_ ABSL_GUARDED_BY(mu_);
  Final final_;  // written once before done_ is set (under mu_), read-only afterwards
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_ENGINE_STREAM_H_
