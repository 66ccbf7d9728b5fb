// Answer normalizers applied before exact match and token F1: whitespace, ASCII case folding,
// JSON canonicalization and the SQuAD answer normalization. Scoring lives in exact_match.h and
// token_f1.h; the character-level metrics (ROUGE-L, chrF, BLEU) carry their own tokenizers.
#ifndef ANVIL_EVAL_NORMALIZE_H_
#define ANVIL_EVAL_NORMALIZE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace anvil::eval {

// Trims `text` and collapses every run of whitespace to one ASCII space. Whitespace is Python's
// (IsPythonSpace: ASCII whitespace plus U+00A0, U+3000 and the other Unicode spaces), so answers
// copied from web text with no-break spaces compare equal to typed ones.
std::string NormalizeWhitespace(absl::string_view text);

// ASCII case folding: 'A'-'Z' become 'a'-'z'; every other byte, including all of a multi-byte
// UTF-8 sequence, is left unchanged, so "É" and "é" stay different (use NormalizeSquad for
// Unicode lowercasing). Whitespace is not touched.
std::string FoldCaseAscii(absl::string_view text);

// Canonical JSON text of `text`: parsed, then written with object keys sorted (bytewise), no
// whitespace, strings as UTF-8 (escapes such as \u00e9 decoded) and numbers as parsed (1 and 1.0
// stay different; 1.50 becomes 1.5). When a key repeats, the last value wins. Invalid JSON (or a
// string that is not valid UTF-8) is InvalidArgument; callers may then fall back to text.
absl::StatusOr<std::string> CanonicalizeJson(absl::string_view text);

// The SQuAD answer normalization of the official evaluation script: Unicode lowercase (ICU full
// case mapping, as Python's str.lower()), remove ASCII punctuation (Python's string.punctuation),
// replace the whole words a/an/the (regex \b(a|an|the)\b with Python's Unicode \w) by a space,
// collapse whitespace as NormalizeWhitespace.
std::string NormalizeSquad(absl::string_view text);

// Which normalizer a metric applies.
enum class Normalization {
  kNone,        // bytes compared as they are
  kWhitespace,  // NormalizeWhitespace
  kCaseFold,    // NormalizeWhitespace then FoldCaseAscii
  kJson,        // CanonicalizeJson (InvalidArgument when the text is not JSON)
  kSquad,       // NormalizeSquad
};

// Applies `normalization` to `text`. Fails only for kJson on invalid JSON.
absl::StatusOr<std::string> Normalize(absl::string_view text, Normalization normalization);

// "none", "whitespace", "case", "json", "squad" (as recipes spell them) -> the enum;
// anything else is InvalidArgument listing the accepted names.
absl::StatusOr<Normalization> ParseNormalization(absl::string_view name);
absl::string_view NormalizationName(Normalization normalization);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_NORMALIZE_H_
