// The generation loop: prefill the prompt, then sample token by token until an end-of-generation
// token, a stop string or max_tokens. Streams text through a callback, holding back bytes that
// may start a stop string or complete a UTF-8 character, so callers never see a partial stop
// string or a broken character.
#ifndef ANVIL_MODEL_GENERATE_H_
#define ANVIL_MODEL_GENERATE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/llama_model.h"
#include "model/sampler.h"

namespace anvil {

struct GenerateOptions {
  int32_t max_tokens = 256;
  std::vector<std::string> stop;  // stop strings (not included in the output)
  bool stop_at_eog = true;        // stop on the tokenizer's end-of-generation tokens
  SamplingParams sampling;
};

enum class FinishReason { kStop, kLength, kEndOfGeneration, kCancelled };
const char* FinishReasonName(FinishReason r);

struct GenerateResult {
  std::string text;              // generated text, stop string excluded
  std::vector<int32_t> tokens;   // generated token ids (the EOG token excluded)
  FinishReason finish = FinishReason::kLength;
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;     // time of the generated tokens' forward passes and sampling
};

// Called with each new piece of text; return false to cancel.
using TextCallback = std::function<bool(std::string_view piece)>;

// Runs on `ctx` from its current state (the prompt is appended at ctx.n_past()).
absl::StatusOr<GenerateResult> Generate(Context& ctx, absl::Span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const TextCallback& on_text = nullptr);

// How many bytes at the end of `text` are a proper prefix of one of `stops` (the streaming
// generators hold them back until they know whether a stop string follows).
size_t StopPrefixHold(std::string_view text, const std::vector<std::string>& stops);

// Length of the longest prefix of `text` that is complete UTF-8 (a partial trailing character
// is excluded).
size_t CompleteUtf8Prefix(std::string_view text);

}  // namespace anvil

#endif  // ANVIL_MODEL_GENERATE_H_
