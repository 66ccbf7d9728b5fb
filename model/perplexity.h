// Perplexity computed the way llama-perplexity computes it (notes §7): non-overlapping chunks
// of n_ctx tokens, a fresh KV cache per chunk, BOS replacing the first token when the model adds
// BOS, and only the second half of each chunk scored.
#ifndef ANVIL_MODEL_PERPLEXITY_H_
#define ANVIL_MODEL_PERPLEXITY_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/llama_model.h"

namespace anvil {

struct PerplexityOptions {
  int64_t n_ctx = 512;
  int64_t max_chunks = -1;  // < 0: all whole chunks
  // Also compute logits (and top1) for the unscored first half of each chunk.
  bool top1_all_positions = false;
};

struct PerplexityResult {
  double ppl = 0;
  double uncertainty = 0;          // as llama-perplexity prints it (+/-)
  double mean_nll = 0;
  int64_t scored_tokens = 0;
  int64_t chunks = 0;
  std::vector<double> running_ppl;  // after each chunk
  // argmax of the logits at every position of every chunk: [chunks * n_ctx]
  // (only when top1_all_positions)
  std::vector<int32_t> top1;
};

// `tokens` is the whole text tokenized with add_special=true, parse_special=false.
// FailedPrecondition when there are fewer than 2*n_ctx tokens (llama-perplexity's rule);
// the context must hold n_ctx positions.
absl::StatusOr<PerplexityResult> ComputePerplexity(
    Context& ctx, absl::Span<const int32_t> tokens, const PerplexityOptions& options,
    const std::function<void(int64_t chunk, double running_ppl)>& on_chunk = nullptr);

}  // namespace anvil

#endif  // ANVIL_MODEL_PERPLEXITY_H_
