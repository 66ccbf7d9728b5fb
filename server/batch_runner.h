// What the engine's step loop needs from a forward-pass implementation: per-sequence KV state
// (opened with a prompt, closed on finish/cancel) and one Forward per step over the new tokens
// of many sequences at once.
#ifndef ANVIL_SERVER_BATCH_RUNNER_H_
#define ANVIL_SERVER_BATCH_RUNNER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/core/thread_pool.h"

namespace anvil::server {

struct AdapterWeights;  // server/adapter_store.h

// One sequence's work in a step: `tokens` go at positions past..past+n-1 of its KV, where past
// is what the runner already holds for it.
struct StepItem {
  int64_t seq = 0;
  absl::Span<const int32_t> tokens;
  bool want_logits = false;               // logits of the last token of `tokens`
  const AdapterWeights* adapter = nullptr;  // null: the base model
};

class BatchRunner {
 public:
  virtual ~BatchRunner() = default;
  // Sets up KV state for sequence `seq` whose prompt is `prompt` and which may grow to
  // `max_positions` positions. False when there is no room now (try again after others leave).
  // *cached: leading prompt positions whose KV is already present (prefix cache); the caller
  // feeds the prompt from there. `adapter_key` separates prefix-cache entries of different
  // adapters (0: base).
  virtual bool Open(int64_t seq, absl::Span<const int32_t> prompt, int64_t max_positions,
                    uint64_t adapter_key, int64_t* cached) = 0;
  virtual void Close(int64_t seq) = 0;
  // Runs the items; the logits of the items with want_logits are written, in item order, to
  // logits [n_wanted][n_vocab].
  virtual absl::Status Forward(absl::Span<const StepItem> items, float* logits) = 0;
  // Whether Open could ever succeed for this many positions (the pool is large enough).
  virtual bool Fits(int64_t max_positions) const = 0;
  virtual int64_t blocks_used() const = 0;
  virtual int64_t blocks_total() const = 0;
  // The threads the runner computes on, lent to the engine between steps for per-sequence work
  // (sampling); null: the engine runs it inline.
  virtual ThreadPool* pool() { return nullptr; }
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_BATCH_RUNNER_H_
