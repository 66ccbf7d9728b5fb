// Pre-tokenizers of byte-level BPE vocabularies (tokenizer.ggml.pre): split raw text into the
// pieces BPE merges never cross, as llama.cpp's unicode_regex_split does, with hand-written
// matchers. Categories come from ICU (ICU 72 = Unicode 15.0); llama.cpp has its own tables
// (Unicode 15.x), so code points assigned later can classify differently. Byte-to-unicode and
// merging live in byte_unicode.h and bpe.h.
#ifndef ANVIL_MODEL_PRETOKENIZER_H_
#define ANVIL_MODEL_PRETOKENIZER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace anvil {

enum class PreTokenizer {
  // "default" (and a missing pre): [\p{P}$+<=>^~|]+, then the GPT-2 pattern, then \p{N}+,
  // then [0-9][0-9][0-9], each applied inside the pieces of the previous one.
  kDefault,
  // "gpt-2" family: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kGpt2,
  // "smollm" / "starcoder" family: \p{N} (every digit alone), then the GPT-2 pattern.
  kSmolLM,
  // "llama-bpe" / "llama3": the Llama-3 pattern (case-insensitive contractions, \p{N}{1,3},
  // newline-aware whitespace). Whole pieces found in the vocabulary skip merging.
  kLlama3,
};

// Maps a tokenizer.ggml.pre value to its pre-tokenizer; "" means "default" as in llama.cpp.
// Unimplemented (naming the value) for anything else.
absl::StatusOr<PreTokenizer> PreTokenizerFromName(std::string_view name);
const char* PreTokenizerName(PreTokenizer p);
// llama.cpp's ignore_merges: try each whole piece as one token before merging.
bool PreTokenizerIgnoresMerges(PreTokenizer p);
// llama.cpp's default add_bos for the type (the file's add_bos_token key overrides it).
bool PreTokenizerAddsBos(PreTokenizer p);

// Appends the pieces of `text` to `pieces`. Each piece is UTF-8; input bytes that are not
// well-formed UTF-8 become U+FFFD (as llama.cpp). Concatenating the pieces gives back `text`
// whenever `text` is valid UTF-8.
void PreTokenize(PreTokenizer p, std::string_view text, std::vector<std::string>* pieces);

}  // namespace anvil

#endif  // ANVIL_MODEL_PRETOKENIZER_H_
