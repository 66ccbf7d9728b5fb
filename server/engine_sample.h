// Per-token helpers of the step loop: log-probabilities from raw logits.
#ifndef ANVIL_SERVER_ENGINE_SAMPLE_H_
#define ANVIL_SERVER_ENGINE_SAMPLE_H_

#include <cstdint>
#include <vector>

#include "server/engine.h"

namespace anvil::server {

// log-softmax of `logits` [n_vocab] (max-subtracted, the exp sum in double): the logprob of
// `chosen` and, when k > 0, the k most likely tokens, most likely first (lower id on ties).
void Logprobs(const float* logits, int64_t n_vocab, int32_t chosen, int32_t k, float* chosen_lp,
              std::vector<TokenLogprob>* top);

}  // namespace anvil::server

#endif  // ANVIL_SERVER_ENGINE_SAMPLE_H_
