// Token sampling: repetition penalty -> top-k -> top-p -> min-p -> temperature -> draw, the
// order of llama.cpp's default chain. temperature <= 0 is greedy (argmax, lowest id on ties).
// Deterministic for a given seed on every platform (own PRNG and uniform conversion).
#ifndef ANVIL_MODEL_SAMPLER_H_
#define ANVIL_MODEL_SAMPLER_H_

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/status/status.h"

namespace anvil {

struct SamplingParams {
  float temperature = 0.8f;   // <= 0: greedy
  int32_t top_k = 40;         // <= 0: off
  float top_p = 0.95f;        // >= 1: off
  float min_p = 0.05f;        // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off; llama.cpp/CTRL style (divide positive, multiply negative)
  int32_t repeat_last_n = 64;   // how many recent tokens the penalty looks at
  uint64_t seed = 0x5eed;
};

// InvalidArgument naming the field for out-of-range values (negative temperature is allowed and
// means greedy; top_p/min_p outside [0, 1], repeat_penalty <= 0, repeat_last_n < 0 are not).
absl::Status ValidateSamplingParams(const SamplingParams& p);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks a token from logits [n_vocab]. Does not record it: call Accept.
  int32_t Sample(const float* logits, int64_t n_vocab);
  // Records a token (prompt or generated) for the repetition penalty.
  void Accept(int32_t token);
  void Reset();

  static int32_t Argmax(const float* logits, int64_t n_vocab);

 private:
  double NextUniform();  // [0, 1)

  SamplingParams p_;
  uint64_t state_;
  std::deque<int32_t> recent_;
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  std::vector<Candidate> cand_;
};

}  // namespace anvil

#endif  // ANVIL_MODEL_SAMPLER_H_
