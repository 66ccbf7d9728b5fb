// Records -> token sequences with loss targets, through the model's own chat template so that
// training sees exactly the bytes and tokens inference sees. Also truncation (keep the start)
// and packing into fixed-length rows. Reading the JSONL is dataset.h's job; ordering the
// examples is data_order.h's.
//
// Decision: every record goes through the chat template, `prompt`/`completion` ones included
// (a user turn + an assistant turn), so a model trained here is prompted the same way at
// inference (the server always applies the template).
#ifndef ANVIL_TRAIN_RENDER_H_
#define ANVIL_TRAIN_RENDER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "train/dataset.h"
#include "train/example.h"

namespace anvil::train {

enum class LossMask {
  // SFT: the tokens of each trained assistant turn: what the model generates after the
  // template's generation prompt, up to and including the end-of-turn marker (ChatML: the
  // content and <|im_end|>, not the "\n" after it).
  kCompletion,
  // Plain language modelling: every position predicts the next token.
  kAllTokens,
};

struct RenderOptions {
  LossMask mask = LossMask::kCompletion;
  int64_t max_length = 512;  // tokens per sequence; longer ones keep their start
  // BPE-dropout (model/bpe.h) for SFT/LM training data: each example is tokenized once, in a
  // segmentation drawn from (dropout_seed, its line number), so a run and its resume see the
  // same tokens. 0 = the tokens inference uses.
  double bpe_dropout = 0.0;
  uint64_t dropout_seed = 0;
};

// What rendering a dataset did; nothing is dropped without being counted here.
struct RenderStats {
  int64_t records = 0;
  int64_t examples = 0;             // kept (pairs, for preference data)
  int64_t truncated = 0;            // kept, but cut to max_length
  int64_t dropped_no_target = 0;    // nothing left to train on after truncation
  int64_t tokens = 0;               // in kept examples (both sides of a pair)
  int64_t trained_tokens = 0;       // targets >= 0 in kept examples
  std::string Summary() const;      // one line for logs
};

class ChatRenderer {
 public:
  // Both must outlive the renderer.
  ChatRenderer(const Tokenizer& tokenizer, const ChatTemplate& chat_template)
      : tokenizer_(tokenizer), template_(chat_template) {}

  // The whole record, untruncated; source_line = record.line. InvalidArgument when the template
  // cannot express the conversation, or when tokenizing segment by segment would not give the
  // tokens inference gives for the full text (the message quotes the first differing token).
  // With `dropout`, the same checks on the deterministic tokens, then the text of each segment
  // (between answer boundaries and control tokens) re-tokenized with BPE-dropout.
  absl::StatusOr<SequenceExample> Render(const ChatRecord& record, LossMask mask,
                                         MergeDropout* dropout = nullptr) const;
  // Chosen and rejected continue the same prompt tokens; targets cover the answers only.
  absl::StatusOr<PreferenceExample> Render(const PreferenceRecord& record) const;

 private:
  const Tokenizer& tokenizer_;
  const ChatTemplate& template_;
};

// Keeps the first max_length tokens (the last kept position gets target -1). Returns whether
// any target is left.
bool TruncateExample(SequenceExample* example, int64_t max_length);

// Renders and truncates every record of an SFT dataset. Errors for all bad records are listed in
// one InvalidArgument ("<file>:<line>: ..."); examples left without targets are dropped and
// counted in `stats`. FailedPrecondition for a preference dataset.
absl::StatusOr<std::vector<SequenceExample>> RenderSftDataset(const Dataset& data,
                                                              const ChatRenderer& renderer,
                                                              const RenderOptions& options,
                                                              RenderStats* stats);
// The same for preference data (options.mask is ignored: answers only). A pair is dropped when
// either side has no target left. FailedPrecondition for an SFT dataset.
absl::StatusOr<std::vector<PreferenceExample>> RenderPreferenceDataset(
    const Dataset& data, const ChatRenderer& renderer, const RenderOptions& options,
    RenderStats* stats);

// Packs examples (each at most max_length tokens) into rows of exactly max_length tokens by
// best-fit decreasing; examples are never split, and the rest of a row is `pad_id` with target
// -1. Each example keeps its own last target of -1, so no loss crosses an example boundary
// (attention still does: rows carry no segment ids). Deterministic; rows have source_line 0.
// InvalidArgument when an example is longer than max_length.
absl::StatusOr<std::vector<SequenceExample>> PackExamples(absl::Span<const SequenceExample> examples,
                                                          int64_t max_length, int32_t pad_id);

// The token to pad with: the vocabulary's pad token, else eos, else 0.
int32_t PaddingToken(const Tokenizer& tokenizer);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_RENDER_H_
