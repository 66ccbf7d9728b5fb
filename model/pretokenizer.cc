// Hand-written equivalents of the pre-tokenizer regexes. The text is decoded once into code
// points with a class byte each; every stage refines a partition (a list of piece ends, in
// code points) and only looks inside one piece at a time, as llama.cpp's regex pipeline does.
#include "model/pretokenizer.h"

#include <unicode/uchar.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "model/byte_unicode.h"

namespace anvil {
namespace {

// Class bits per code point. Every code point has at least one of kLetter, kNumber,
// kWhitespace or kOther, so "[^\s\p{L}\p{N}]" is exactly kOther.
enum : uint8_t {
  kLetter = 1,       // \p{L}
  kNumber = 2,       // \p{N}
  kWhitespace = 4,   // \s (Unicode White_Space)
  kOther = 8,        // anything else
  kPunctDefault = 16,  // [\p{P}$+<=>^~|] of the "default" pre-tokenizer's first regex
};

bool IsWhiteSpace(uint32_t cp) {
  // The Unicode White_Space property (PropList.txt); stable across Unicode versions.
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

uint8_t Classify(uint32_t cp) {
  if (IsWhiteSpace(cp)) return kWhitespace;
  if (cp > 0x10FFFF) return kOther;
  switch (u_charType(static_cast<UChar32>(cp))) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return kNumber;
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_CONNECTOR_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
      return kOther | kPunctDefault;
    default:
      break;
  }
  // ASCII symbols that the "default" regex lists next to \p{P}.
  switch (cp) {
    case '$': case '+': case '<': case '=': case '>': case '^': case '~': case '|':
      return kOther | kPunctDefault;
    default:
      return kOther;
  }
}

struct Text {
  std::vector<uint32_t> cps;
  std::vector<uint8_t> cls;
  bool Is(size_t i, uint8_t mask) const { return (cls[i] & mask) != 0; }
};

// Piece ends (exclusive, in code points) within [begin, end); the last one is always `end`.
using Ends = std::vector<uint32_t>;

// Appends `at` as a piece end unless it would make an empty piece.
void Cut(uint32_t at, uint32_t* prev, Ends* out) {
  if (at > *prev) {
    out->push_back(at);
    *prev = at;
  }
}

// Regex "X" with text between matches kept: each code point of class `mask` is its own piece.
void IsolateEach(const Text& t, uint32_t begin, uint32_t end, uint8_t mask, Ends* out) {
  uint32_t prev = begin;
  for (uint32_t i = begin; i < end; ++i) {
    if (t.Is(i, mask)) {
      Cut(i, &prev, out);
      Cut(i + 1, &prev, out);
    }
  }
  Cut(end, &prev, out);
}

// Regex "X+": maximal runs of class `mask` are pieces.
void IsolateRuns(const Text& t, uint32_t begin, uint32_t end, uint8_t mask, Ends* out) {
  uint32_t prev = begin;
  uint32_t i = begin;
  while (i < end) {
    if (!t.Is(i, mask)) {
      ++i;
      continue;
    }
    Cut(i, &prev, out);
    while (i < end && t.Is(i, mask)) ++i;
    Cut(i, &prev, out);
  }
  Cut(end, &prev, out);
}

// Regex "[0-9][0-9][0-9]": leftmost non-overlapping triples of ASCII digits.
void IsolateAsciiDigitTriples(const Text& t, uint32_t begin, uint32_t end, Ends* out) {
  auto digit = [&](uint32_t i) { return t.cps[i] >= '0' && t.cps[i] <= '9'; };
  uint32_t prev = begin;
  uint32_t i = begin;
  while (i + 3 <= end) {
    if (digit(i) && digit(i + 1) && digit(i + 2)) {
      Cut(i, &prev, out);
      Cut(i + 3, &prev, out);
      i += 3;
    } else {
      ++i;
    }
  }
  Cut(end, &prev, out);
}

// Length (2 or 3) of a contraction 's 't 'm 'd 're 've 'll starting at i, or 0.
uint32_t ContractionLength(const Text& t, uint32_t i, uint32_t end, bool ignore_case) {
  if (t.cps[i] != '\'' || i + 1 >= end) return 0;
  auto lower = [&](uint32_t c) { return ignore_case && c >= 'A' && c <= 'Z' ? c + 32 : c; };
  const uint32_t a = lower(t.cps[i + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= end) return 0;
  const uint32_t b = lower(t.cps[i + 2]);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// Whitespace run starting at i: \s+(?!\S) leaves the last whitespace to the following
// non-space; a run that reaches the end of the piece is taken whole (\s+).
uint32_t WhitespaceEnd(const Text& t, uint32_t i, uint32_t end) {
  uint32_t j = i;
  while (j < end && t.Is(j, kWhitespace)) ++j;
  if (j - i > 1 && j < end) return j - 1;
  return j > i ? j : i + 1;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void SplitGpt2(const Text& t, uint32_t begin, uint32_t end, Ends* out) {
  uint32_t prev = begin;
  uint32_t pos = begin;
  while (pos < end) {
    if (uint32_t n = ContractionLength(t, pos, end, /*ignore_case=*/false); n > 0) {
      pos += n;
      Cut(pos, &prev, out);
      continue;
    }
    // " ?" then a run of letters, of numbers or of anything else that is not whitespace.
    const uint32_t start = pos + (t.cps[pos] == ' ' ? 1 : 0);
    uint32_t run_end = start;
    if (start < end) {
      for (uint8_t run : {kLetter, kNumber, kOther}) {
        if (!t.Is(start, run)) continue;
        while (run_end < end && t.Is(run_end, run)) ++run_end;
        break;
      }
    }
    pos = run_end > start ? run_end : WhitespaceEnd(t, pos, end);
    Cut(pos, &prev, out);
  }
  Cut(end, &prev, out);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
void SplitLlama3(const Text& t, uint32_t begin, uint32_t end, Ends* out) {
  auto is_crlf = [&](uint32_t i) { return t.cps[i] == '\r' || t.cps[i] == '\n'; };
  uint32_t prev = begin;
  uint32_t pos = begin;
  while (pos < end) {
    if (uint32_t n = ContractionLength(t, pos, end, /*ignore_case=*/true); n > 0) {
      pos += n;
      Cut(pos, &prev, out);
      continue;
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!is_crlf(pos) && !t.Is(pos, kNumber) &&
        (t.Is(pos, kLetter) || (pos + 1 < end && t.Is(pos + 1, kLetter)))) {
      ++pos;
      while (pos < end && t.Is(pos, kLetter)) ++pos;
      Cut(pos, &prev, out);
      continue;
    }
    // \p{N}{1,3}
    if (t.Is(pos, kNumber)) {
      uint32_t run_start = pos;
      while (pos < end && t.Is(pos, kNumber)) {
        if (++pos - run_start == 3) {
          Cut(pos, &prev, out);
          run_start = pos;
        }
      }
      Cut(pos, &prev, out);
      continue;
    }
    // " ?[^\s\p{L}\p{N}]+[\r\n]*". A lone space at the end of the piece also lands here in
    // llama.cpp; it gives the same one-space piece as \s+ would.
    const bool space = t.cps[pos] == ' ';
    const uint32_t start = pos + (space ? 1 : 0);
    if (start >= end || t.Is(start, kOther)) {
      pos = start;
      while (pos < end && t.Is(pos, kOther)) ++pos;
      while (pos < end && is_crlf(pos)) ++pos;
      Cut(pos, &prev, out);
      continue;
    }
    // \s*[\r\n]+ : the longest whitespace prefix that ends with \r or \n.
    uint32_t j = pos;
    uint32_t last_crlf_end = 0;
    while (j < end && t.Is(j, kWhitespace)) {
      if (is_crlf(j)) last_crlf_end = j + 1;
      ++j;
    }
    pos = last_crlf_end > 0 ? last_crlf_end : WhitespaceEnd(t, pos, end);
    Cut(pos, &prev, out);
  }
  Cut(end, &prev, out);
}

using Stage = void (*)(const Text&, uint32_t, uint32_t, Ends*);

void ApplyStage(const Text& t, Stage stage, Ends* ends) {
  Ends next;
  next.reserve(ends->size() * 2);
  uint32_t begin = 0;
  for (uint32_t end : *ends) {
    stage(t, begin, end, &next);
    begin = end;
  }
  ends->swap(next);
}

void DigitsEach(const Text& t, uint32_t b, uint32_t e, Ends* o) { IsolateEach(t, b, e, kNumber, o); }
void DigitRuns(const Text& t, uint32_t b, uint32_t e, Ends* o) { IsolateRuns(t, b, e, kNumber, o); }
void PunctRuns(const Text& t, uint32_t b, uint32_t e, Ends* o) {
  IsolateRuns(t, b, e, kPunctDefault, o);
}

}  // namespace

absl::StatusOr<PreTokenizer> PreTokenizerFromName(std::string_view name) {
  // Names as llama.cpp's llama_vocab::load spells them (only those whose behaviour we match
  // in full). "gpt2" is accepted next to llama.cpp's "gpt-2".
  if (name.empty() || name == "default") return PreTokenizer::kDefault;
  for (std::string_view n : {"gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais", "exaone4"}) {
    if (name == n) return PreTokenizer::kGpt2;
  }
  for (std::string_view n : {"smollm", "starcoder", "refact", "command-r", "codeshell",
                             "exaone", "minerva-7b", "mellum2"}) {
    if (name == n) return PreTokenizer::kSmolLM;
  }
  for (std::string_view n : {"llama3", "llama-v3", "llama-bpe"}) {
    if (name == n) return PreTokenizer::kLlama3;
  }
  return absl::UnimplementedError(absl::StrCat(
      "tokenizer.ggml.pre = '", std::string(name),
      "' is not supported (supported: default, gpt-2, smollm family, llama-bpe/llama3)"));
}

const char* PreTokenizerName(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::kDefault: return "default";
    case PreTokenizer::kGpt2: return "gpt-2";
    case PreTokenizer::kSmolLM: return "smollm";
    case PreTokenizer::kLlama3: return "llama3";
  }
  return "?";
}

bool PreTokenizerIgnoresMerges(PreTokenizer p) { return p == PreTokenizer::kLlama3; }
bool PreTokenizerAddsBos(PreTokenizer p) { return p == PreTokenizer::kLlama3; }

void PreTokenize(PreTokenizer p, std::string_view text, std::vector<std::string>* pieces) {
  if (text.empty()) return;
  Text t;
  t.cps = DecodeUtf8Lenient(text);
  t.cls.resize(t.cps.size());
  for (size_t i = 0; i < t.cps.size(); ++i) t.cls[i] = Classify(t.cps[i]);

  Ends ends = {static_cast<uint32_t>(t.cps.size())};
  switch (p) {
    case PreTokenizer::kDefault:
      ApplyStage(t, PunctRuns, &ends);
      ApplyStage(t, SplitGpt2, &ends);
      ApplyStage(t, DigitRuns, &ends);
      ApplyStage(t, IsolateAsciiDigitTriples, &ends);
      break;
    case PreTokenizer::kGpt2:
      ApplyStage(t, SplitGpt2, &ends);
      break;
    case PreTokenizer::kSmolLM:
      ApplyStage(t, DigitsEach, &ends);
      ApplyStage(t, SplitGpt2, &ends);
      break;
    case PreTokenizer::kLlama3:
      ApplyStage(t, SplitLlama3, &ends);
      break;
  }

  uint32_t begin = 0;
  for (uint32_t end : ends) {
    std::string piece;
    for (uint32_t i = begin; i < end; ++i) AppendUtf8(t.cps[i], &piece);
    pieces->push_back(std::move(piece));
    begin = end;
  }
}

}  // namespace anvil
