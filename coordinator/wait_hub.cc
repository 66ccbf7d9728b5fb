#include "coordinator/wait_hub.h"

#include <utility>
#include <vector>

namespace anvil::coordinator {
namespace {

// Erases the (k, id) pair from a multimap index.
template <typename K>
void EraseIndex(std::multimap<K, uint64_t>& index, const K& k, uint64_t id) {
  auto [begin, end] = index.equal_range(k);
  for (auto it = begin; it != end; ++it) {
    if (it->second == id) {
      index.erase(it);
      return;
    }
  }
}

}  // namespace

WaitHub::WaitHub() : timer_([this] { TimerLoop(); }) {}

WaitHub::~WaitHub() { Shutdown(); }

uint64_t WaitHub::Add(const std::string& key, absl::Time deadline, Callback callback) {
  uint64_t id;
  {
    absl::MutexLock lock(&mu_);
    id = next_id_++;
    if (!shutdown_) {
      by_key_.emplace(key, id);
      by_deadline_.emplace(deadline, id);
      waiters_[id] = Waiter{key, deadline, std::move(callback)};
      return id;
    }
  }
  callback(WakeReason::kShutdown);
  return id;
}

bool WaitHub::Remove(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return false;
  EraseIndex(by_key_, it->second.key, id);
  EraseIndex(by_deadline_, it->second.deadline, id);
  waiters_.erase(it);
  return true;
}

void WaitHub::Notify(const std::string& key) {
  std::vector<Callback> ready;
  {
    absl::MutexLock lock(&mu_);
    auto [begin, end] = by_key_.equal_range(key);
    for (auto it = begin; it != end; ++it) {
      auto w = waiters_.find(it->second);
      EraseIndex(by_deadline_, w->second.deadline, it->second);
      ready.push_back(std::move(w->second.callback));
      waiters_.erase(w);
    }
    by_key_.erase(begin, end);
  }
  for (Callback& cb : ready) cb(WakeReason::kNotified);
}

void WaitHub::Shutdown() {
  std::vector<Callback> ready;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
    for (auto& [id, w] : waiters_) ready.push_back(std::move(w.callback));
    waiters_.clear();
    by_key_.clear();
    by_deadline_.clear();
  }
  for (Callback& cb : ready) cb(WakeReason::kShutdown);
  if (timer_.joinable()) timer_.join();
}

void WaitHub::TimerLoop() {
  for (;;) {
    std::vector<Callback> ready;
    {
      absl::MutexLock lock(&mu_);
      // Sleeps until the earliest deadline, a new earlier one, or shutdown.
      const absl::Time next =
          by_deadline_.empty() ? absl::InfiniteFuture() : by_deadline_.begin()->first;
      auto changed = [this, next]() {
        return shutdown_ || (!by_deadline_.empty() && by_deadline_.begin()->first < next);
      };
      mu_.AwaitWithDeadline(absl::Condition(&changed), next);
      if (shutdown_) return;
      const absl::Time now = absl::Now();
      while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
        const uint64_t id = by_deadline_.begin()->second;
        by_deadline_.erase(by_deadline_.begin());
        auto w = waiters_.find(id);
        EraseIndex(by_key_, w->second.key, id);
        ready.push_back(std::move(w->second.callback));
        waiters_.erase(w);
      }
    }
    for (Callback& cb : ready) cb(WakeReason::kTimeout);
  }
}

}  // namespace anvil::coordinator
