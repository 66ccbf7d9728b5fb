// Sampling chain over a candidate list; the PRNG is splitmix64, its doubles take the top 53 bits.
#include "model/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "model/splitmix64.h"

namespace anvil {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature)) return absl::InvalidArgumentError("temperature must be finite");
  if (!(p.top_p >= 0.0f && p.top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p = ", p.top_p, " is outside [0, 1]"));
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("min_p = ", p.min_p, " is outside [0, 1]"));
  }
  if (!(p.repeat_penalty > 0.0f) || !std::isfinite(p.repeat_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("repeat_penalty = ", p.repeat_penalty, " must be > 0"));
  }
  if (p.repeat_last_n < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("repeat_last_n = ", p.repeat_last_n, " must be >= 0"));
  }
  return absl::OkStatus();
}

Sampler::Sampler(const SamplingParams& params) : p_(params), state_(params.seed) {}

void Sampler::Reset() {
  state_ = p_.seed;
  recent_.clear();
}

void Sampler::Accept(int32_t token) {
  if (p_.repeat_last_n <= 0) return;
  recent_.push_back(token);
  while (static_cast<int32_t>(recent_.size()) > p_.repeat_last_n) recent_.pop_front();
}

double Sampler::NextUniform() { return UnitInterval(SplitMix64Next(&state_)); }

int32_t Sampler::Argmax(const float* logits, int64_t n_vocab) {
  // The first index of the largest value (NaNs never win; a NaN at index 0 makes it 0), as a
  // scan that keeps the first strict maximum. In two passes that vectorize: the maximum over
  // 16 interleaved lanes (lane-wise, so no reassociation), then the first index holding it.
  if (n_vocab <= 0) return 0;
  constexpr int kLanes = 16;
  float lane[kLanes];
  for (float& l : lane) l = logits[0];
  int64_t i = 0;
  for (; i + kLanes <= n_vocab; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) lane[j] = logits[i + j] > lane[j] ? logits[i + j] : lane[j];
  }
  float best = logits[0];
  for (float l : lane) best = l > best ? l : best;
  for (; i < n_vocab; ++i) best = logits[i] > best ? logits[i] : best;
  for (int64_t k = 0; k < n_vocab; ++k) {
    if (logits[k] == best) return static_cast<int32_t>(k);
  }
  return 0;  // best is NaN: logits[0] was NaN
}

int32_t Sampler::Sample(const float* logits, int64_t n_vocab) {
  if (p_.temperature <= 0.0f && (p_.repeat_penalty == 1.0f || recent_.empty())) {
    // Greedy with nothing to penalize: straight from the logits (building the candidate list
    // would write 12 bytes per vocabulary entry for nothing).
    return Argmax(logits, n_vocab);
  }
  cand_.resize(static_cast<size_t>(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) cand_[i] = {static_cast<int32_t>(i), logits[i], 0.0f};

  if (p_.repeat_penalty != 1.0f && !recent_.empty()) {
    absl::flat_hash_set<int32_t> seen(recent_.begin(), recent_.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= n_vocab) continue;
      float& l = cand_[id].logit;
      l = l > 0.0f ? l / p_.repeat_penalty : l * p_.repeat_penalty;
    }
  }
  if (p_.temperature <= 0.0f) {
    int64_t best = 0;
    for (int64_t i = 1; i < n_vocab; ++i) {
      if (cand_[i].logit > cand_[best].logit) best = i;
    }
    return cand_[best].id;
  }

  // Sort by logit descending (ties: lower id first), keeping only top_k when set.
  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t keep = cand_.size();
  if (p_.top_k > 0 && static_cast<size_t>(p_.top_k) < keep) keep = static_cast<size_t>(p_.top_k);
  std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
  cand_.resize(keep);

  auto softmax = [&](float temp) {
    const float mx = cand_[0].logit;
    double sum = 0.0;
    for (auto& c : cand_) {
      c.p = std::exp((c.logit - mx) / temp);
      sum += c.p;
    }
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
  };
  // top-p and min-p work on the untempered distribution, as llama.cpp's chain does.
  softmax(1.0f);
  if (p_.top_p < 1.0f) {
    double cum = 0.0;
    size_t n = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].p;
      if (cum >= p_.top_p) {
        n = i + 1;
        break;
      }
    }
    cand_.resize(n);
  }
  if (p_.min_p > 0.0f) {
    const float threshold = cand_[0].p * p_.min_p;
    size_t n = 1;
    while (n < cand_.size() && cand_[n].p >= threshold) ++n;
    cand_.resize(n);
  }
  softmax(p_.temperature);
  const double r = NextUniform();
  double cum = 0.0;
  for (const auto& c : cand_) {
    cum += c.p;
    if (r < cum) return c.id;
  }
  return cand_.back().id;
}

}  // namespace anvil
