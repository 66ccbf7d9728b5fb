// The order in which the trainer sees examples: epochs of seeded permutations from our own
// PRNG (SplitMix64 + rejection sampling, so the same on every platform and standard library,
// unlike std::shuffle), and a position (epoch, index) that a checkpoint stores so that a resumed
// run continues with exactly the examples the interrupted one would have seen.
#ifndef ANVIL_TRAIN_DATA_ORDER_H_
#define ANVIL_TRAIN_DATA_ORDER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"

namespace anvil::train {

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fully specified by its arithmetic.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next();
  // Uniform in [0, n) without modulo bias; n > 0.
  uint64_t Below(uint64_t n);

 private:
  uint64_t state_;
};

// The permutation of [0, n) used for `epoch` under `seed` (Fisher-Yates).
std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch);

// Where the order stands: the next example is permutation(epoch)[index].
struct DataPosition {
  int64_t epoch = 0;
  int64_t index = 0;  // in [0, num_examples]
  bool operator==(const DataPosition&) const = default;
};

class DataOrder {
 public:
  // shuffle=false: every epoch is 0, 1, ..., n-1.
  DataOrder(int64_t num_examples, uint64_t seed, bool shuffle);

  int64_t num_examples() const { return n_; }
  uint64_t seed() const { return seed_; }
  bool shuffle() const { return shuffle_; }

  // The next example index, rolling over into the next epoch; -1 when there are no examples.
  int64_t Next();
  // The next `count` indices (a micro-batch may span an epoch boundary).
  std::vector<int64_t> NextBatch(int64_t count);
  // The position of the next Next(), always normalized (index < n).
  DataPosition position() const { return pos_; }
  // Restores a position saved from an order with the same n, seed and shuffle. InvalidArgument
  // for a negative epoch or an index outside [0, n]; index == n means the next epoch's start.
  absl::Status Seek(DataPosition position);

 private:
  void StartEpoch(int64_t epoch);

  int64_t n_;
  uint64_t seed_;
  bool shuffle_;
  DataPosition pos_;
  std::vector<int64_t> perm_;  // of pos_.epoch
};

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_DATA_ORDER_H_
