// Deterministic data order: SplitMix64, unbiased bounded draws by rejection, Fisher-Yates per
// epoch with an epoch-specific seed, and resumable positions.
#include "train/data_order.h"

#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/splitmix64.h"

namespace anvil::train {

uint64_t SplitMix64::Next() { return SplitMix64Next(&state_); }

uint64_t SplitMix64::Below(uint64_t n) {
  // Reject the lowest (2^64 mod n) values so that every residue is equally likely.
  const uint64_t threshold = (0 - n) % n;
  for (;;) {
    const uint64_t r = Next();
    if (r >= threshold) return r % n;
  }
}

std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(static_cast<size_t>(n > 0 ? n : 0));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  // One stream per (seed, epoch): mix the epoch in through a first SplitMix64 step.
  SplitMix64 mix(seed ^ (static_cast<uint64_t>(epoch) * 0xD1B54A32D192ED03ull));
  SplitMix64 rng(mix.Next());
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.Below(static_cast<uint64_t>(i) + 1));
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
  }
  return perm;
}

DataOrder::DataOrder(int64_t num_examples, uint64_t seed, bool shuffle)
    : n_(num_examples < 0 ? 0 : num_examples), seed_(seed), shuffle_(shuffle) {
  StartEpoch(0);
}

void DataOrder::StartEpoch(int64_t epoch) {
  pos_ = {epoch, 0};
  if (shuffle_) {
    perm_ = EpochPermutation(n_, seed_, epoch);
  } else if (static_cast<int64_t>(perm_.size()) != n_) {
    perm_.resize(static_cast<size_t>(n_));
    std::iota(perm_.begin(), perm_.end(), int64_t{0});
  }
}

int64_t DataOrder::Next() {
  if (n_ == 0) return -1;
  const int64_t id = perm_[static_cast<size_t>(pos_.index)];
  if (++pos_.index == n_) StartEpoch(pos_.epoch + 1);
  return id;
}

std::vector<int64_t> DataOrder::NextBatch(int64_t count) {
  std::vector<int64_t> out;
  if (n_ == 0) return out;
  out.reserve(static_cast<size_t>(count > 0 ? count : 0));
  for (int64_t i = 0; i < count; ++i) out.push_back(Next());
  return out;
}

absl::Status DataOrder::Seek(DataPosition p) {
  if (p.epoch < 0 || p.index < 0 || p.index > n_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "data position (epoch ", p.epoch, ", index ", p.index, ") is outside a dataset of ", n_,
        " examples; was the checkpoint written for another dataset?"));
  }
  if (p.index == n_ && n_ > 0) {
    StartEpoch(p.epoch + 1);
  } else {
    StartEpoch(p.epoch);
    pos_.index = p.index;
  }
  return absl::OkStatus();
}

}  // namespace anvil::train
