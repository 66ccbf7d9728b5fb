// Byte-level BPE merging of one pre-tokenized piece (notes §3.3 step 4): symbols start as one
// per input byte (in the GPT-2 alphabet), the adjacent pair with the lowest merge rank is
// merged first (ties: leftmost), and the final symbols are looked up in the vocabulary.
// Owns the text -> id table of the vocabulary; special tokens and pre-tokenizing are the
// tokenizer's business.
#ifndef ANVIL_MODEL_BPE_H_
#define ANVIL_MODEL_BPE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace anvil {

// BPE-dropout (Provilkov et al., 2020): while merging, each merge whose turn has come is skipped
// with probability p, so a word comes out in one of its finer segmentations (every piece is
// still a token of the vocabulary). A training-time regularizer; inference never uses it.
// The draws come from `state` (SplitMix64), so a seed gives the same segmentations every time.
struct MergeDropout {
  double p = 0.0;        // in [0, 1)
  uint64_t state = 0;    // advanced by every draw
  bool Drop();
};

class BpeModel {
 public:
  // `tokens`: id -> text; `merges`: "left right" (split at the first space at index >= 1),
  // rank = index. InvalidArgument for a duplicate token text or a merge without a separator.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(const std::vector<std::string>& tokens,
                                                          const std::vector<std::string>& merges);

  // Appends the token ids of `piece` (raw UTF-8 bytes, not yet byte-to-unicode encoded).
  // ignore_merges: if the whole encoded piece is a token, emit it without merging.
  // dropout: nullptr (or p = 0) for the deterministic segmentation.
  void EncodePiece(std::string_view piece, bool ignore_merges, std::vector<int32_t>* out,
                   MergeDropout* dropout = nullptr) const;

  // Token id of an exact vocabulary text, or -1.
  int32_t Find(std::string_view text) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t result;  // symbol id of left + right
  };
  BpeModel() = default;
  // Symbol id of `text`, adding it to the table if new (ids >= n_tokens_ are not tokens).
  int32_t Intern(std::string_view text);
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  int32_t n_tokens_ = 0;
  // Every string that can be a symbol: the vocabulary (ids = token ids) plus merge operands
  // and results that are not tokens. A symbol is identified by its text, so comparing ids is
  // comparing texts.
  absl::flat_hash_map<std::string, int32_t> symbol_ids_;
  int32_t n_symbols_ = 0;
  absl::flat_hash_map<uint64_t, Merge> merges_;  // (left symbol, right symbol) -> merge
  int32_t byte_symbol_[256] = {};  // symbol id of each byte's one-character text, or -1
};

}  // namespace anvil

#endif  // ANVIL_MODEL_BPE_H_
