#include "server/engine_sample.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace anvil::server {

void Logprobs(const float* logits, int64_t n_vocab, int32_t chosen, int32_t k, float* chosen_lp,
              std::vector<TokenLogprob>* top) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n_vocab; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; ++i) sum += std::exp(static_cast<double>(logits[i] - mx));
  const double log_z = static_cast<double>(mx) + std::log(sum);
  auto lp = [&](int64_t i) { return static_cast<float>(logits[i] - log_z); };
  *chosen_lp = lp(chosen);
  top->clear();
  if (k <= 0) return;
  k = static_cast<int32_t>(std::min<int64_t>(k, n_vocab));
  std::vector<int32_t> ids(static_cast<size_t>(n_vocab));
  std::iota(ids.begin(), ids.end(), 0);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int32_t i = 0; i < k; ++i) top->push_back({ids[i], lp(ids[i])});
}

}  // namespace anvil::server
