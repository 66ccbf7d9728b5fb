// Prefill + sampling loop with stop strings and streaming hold-back.
#include "model/generate.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"

namespace anvil {
namespace {

double Seconds(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

size_t StopPrefixHold(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops) {
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n) {
      if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kEndOfGeneration:
      return "eog";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

size_t CompleteUtf8Prefix(std::string_view text) {
  // Look back at most 3 bytes for the start of a trailing multi-byte character.
  const size_t n = text.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    const auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte
    size_t len = 1;
    if ((c & 0xE0) == 0xC0) len = 2;
    else if ((c & 0xF0) == 0xE0) len = 3;
    else if ((c & 0xF8) == 0xF0) len = 4;
    return back < len ? n - back : n;
  }
  return n;
}

absl::StatusOr<GenerateResult> Generate(Context& ctx, absl::Span<const int32_t> prompt,
                                        const GenerateOptions& options,
                                        const TextCallback& on_text) {
  ANVIL_RETURN_IF_ERROR(ValidateSamplingParams(options.sampling));
  if (prompt.empty()) return absl::InvalidArgumentError("generate: the prompt is empty");
  if (options.max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("generate: max_tokens = ", options.max_tokens, " must be >= 0"));
  }
  for (const std::string& s : options.stop) {
    if (s.empty()) return absl::InvalidArgumentError("generate: empty stop string");
  }
  const Tokenizer& tok = ctx.model().tokenizer();
  GenerateResult r;
  r.prompt_tokens = static_cast<int64_t>(prompt.size());
  Sampler sampler(options.sampling);
  for (int32_t id : prompt) sampler.Accept(id);

  auto t0 = std::chrono::steady_clock::now();
  ANVIL_RETURN_IF_ERROR(ctx.Eval(prompt));
  auto t1 = std::chrono::steady_clock::now();
  r.prefill_seconds = Seconds(t0, t1);

  size_t emitted = 0;  // bytes of r.text already passed to on_text
  auto flush = [&](size_t upto) -> bool {
    if (upto <= emitted) return true;
    std::string_view piece(r.text.data() + emitted, upto - emitted);
    emitted = upto;
    return on_text == nullptr || on_text(piece);
  };
  r.finish = FinishReason::kLength;
  for (int32_t i = 0; i < options.max_tokens; ++i) {
    const int32_t id = sampler.Sample(ctx.logits(ctx.n_logits() - 1), ctx.n_vocab());
    sampler.Accept(id);
    if (options.stop_at_eog && tok.IsEndOfGeneration(id)) {
      r.finish = FinishReason::kEndOfGeneration;
      break;
    }
    r.tokens.push_back(id);
    r.text += tok.TokenToPiece(id, /*special=*/true);
    // A stop string may now be complete: cut the text there.
    size_t cut = std::string::npos;
    for (const std::string& s : options.stop) {
      const size_t from = emitted > s.size() ? emitted - s.size() : 0;
      const size_t at = r.text.find(s, from);
      if (at != std::string::npos) cut = std::min(cut, at);
    }
    if (cut != std::string::npos) {
      r.text.resize(cut);
      r.finish = FinishReason::kStop;
      break;
    }
    const size_t safe = CompleteUtf8Prefix(r.text);
    const size_t hold = StopPrefixHold(std::string_view(r.text).substr(0, safe), options.stop);
    if (!flush(safe - hold)) {
      r.finish = FinishReason::kCancelled;
      break;
    }
    if (i + 1 == options.max_tokens) break;
    if (ctx.n_past() >= ctx.n_ctx()) break;  // context full: finish as "length"
    ANVIL_RETURN_IF_ERROR(ctx.Eval({&r.tokens.back(), 1}));
  }
  if (r.finish != FinishReason::kCancelled) flush(r.text.size());
  r.decode_seconds = Seconds(t1, std::chrono::steady_clock::now());
  return r;
}

}  // namespace anvil
