// Wake-ups for the long-running calls (PollTask, WatchJob, Rendezvous Get/Wait) without parking
// a thread per call: a call registers a callback under a key ("worker/<id>", "job/<id>",
// "rdv/<namespace>") with a deadline, and the callback runs exactly once — when the key is
// notified, when the deadline passes (on the hub's one timer thread), when the call removes it
// first (then never), or at shutdown. Callbacks run without the hub's lock held, so they may
// finish gRPC reactors or add themselves again.
#ifndef ANVIL_COORDINATOR_WAIT_HUB_H_
#define ANVIL_COORDINATOR_WAIT_HUB_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anvil::coordinator {

enum class WakeReason { kNotified, kTimeout, kShutdown };

class WaitHub {
 public:
  using Callback = std::function<void(WakeReason)>;

  WaitHub();
  ~WaitHub();  // Shutdown()
  WaitHub(const WaitHub&) = delete;
  WaitHub& operator=(const WaitHub&) = delete;

  // Registers `callback`; returns its id. After Shutdown the callback runs at once (kShutdown).
  uint64_t Add(const std::string& key, absl::Time deadline, Callback callback);
  // True when the callback was still waiting and now never runs; false when it already ran or
  // is running.
  bool Remove(uint64_t id);
  // Runs the callbacks waiting on `key` (kNotified).
  void Notify(const std::string& key);
  // Runs every waiting callback (kShutdown), stops the timer thread; later Adds run at once.
  void Shutdown();

 private:
  struct Waiter {
    std::string key;
    absl::Time deadline;
    Callback callback;
  };
  void TimerLoop();

  absl::Mutex mu_;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  std::multimap<std::string, uint64_t> by_key_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, uint64_t> by_deadline_ ABSL_GUARDED_BY(mu_);
  std::thread timer_;
};

}  // namespace anvil::coordinator

#endif  // ANVIL_COORDINATOR_WAIT_HUB_H_
