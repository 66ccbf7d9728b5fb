// Reads several engine streams (the n choices of one request) from one thread: every stream's
// wakeup signals one shared condition, so the reader sleeps until any of them has something.
// Destroying the set cancels the streams that have not finished.
#ifndef ANVIL_SERVER_SERVER_STREAMS_H_
#define ANVIL_SERVER_SERVER_STREAMS_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "server/engine.h"

namespace anvil::server {

class StreamSet {
 public:
  explicit StreamSet(std::vector<std::shared_ptr<Stream>> streams);
  ~StreamSet();
  StreamSet(const StreamSet&) = delete;
  StreamSet& operator=(const StreamSet&) = delete;

  struct Item {
    int index = 0;
    bool done = false;   // stream `index` finished: its final() is valid; no event
    Event event;         // when !done
  };
  // Blocks until a stream has an event or finishes (each finish is reported once). False when
  // every stream has finished, or after `deadline` (then *item is untouched).
  bool Next(Item* item, absl::Time deadline = absl::InfiniteFuture());
  void CancelAll();
  bool all_done() const { return remaining_ == 0; }
  size_t size() const { return streams_.size(); }
  const Stream& stream(int i) const { return *streams_[i]; }

 private:
  struct Signal;
  std::shared_ptr<Signal> signal_;
  std::vector<std::shared_ptr<Stream>> streams_;
  std::vector<bool> done_;
  int remaining_ = 0;
  size_t next_ = 0;  // round-robin start, so one busy stream cannot starve the others
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_SERVER_STREAMS_H_
