// Byte-level BPE tokenizer (tokenizer.ggml.model = "gpt2") with the pre-tokenizers of the
// SmolLM2 ("smollm"), GPT-2 ("gpt2", "default") and Llama-3 ("llama-bpe", "llama3") families,
// special-token splitting and decoding, matching llama.cpp's llama_tokenize / token_to_piece.
// Loading the vocabulary from GGUF metadata is LoadVocab; the tokenizer itself holds plain data.
#ifndef ANVIL_MODEL_TOKENIZER_H_
#define ANVIL_MODEL_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/bpe.h"
#include "model/gguf.h"

namespace anvil {

// llama.cpp token types (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

// Everything the tokenizer needs, as plain data (from GGUF metadata or built by tests).
struct VocabData {
  std::string model = "gpt2";      // tokenizer.ggml.model
  std::string pre = "default";     // tokenizer.ggml.pre
  std::vector<std::string> tokens; // id -> text (GPT-2 byte-to-unicode alphabet)
  std::vector<TokenType> types;    // id -> type; empty means all normal
  std::vector<std::string> merges; // "left right", rank = index
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  int32_t eot_id = -1;             // optional end-of-turn token
  bool add_bos = false;
  bool add_eos = false;
};

// Reads tokenizer.ggml.* from a GGUF file. Unimplemented (naming the value) for a tokenizer
// model or pre-tokenizer we do not support; InvalidArgument for inconsistent metadata
// (array lengths differ, ids out of range, a malformed merge).
absl::StatusOr<VocabData> LoadVocab(const gguf::GgufFile& file);

class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Create(VocabData vocab);
  ~Tokenizer();

  // Tokenizes `text`. add_special: prepend BOS / append EOS when the vocab says so.
  // parse_special: split out control tokens such as <|im_start|> written in the text
  // (user-defined tokens are always split out), as llama_tokenize does.
  std::vector<int32_t> Encode(std::string_view text, bool add_special, bool parse_special) const;
  // The same with BPE-dropout (model/bpe.h) on the normal text; control and user-defined tokens
  // are never split. For training data only: inference uses the deterministic Encode.
  std::vector<int32_t> Encode(std::string_view text, bool add_special, bool parse_special,
                              MergeDropout* dropout) const;

  // The bytes of one token. Control tokens give their text only when `special` is true.
  std::string TokenToPiece(int32_t id, bool special = true) const;
  // Concatenated pieces; decode(encode(s, false, true)) == s for any valid UTF-8 s.
  std::string Decode(absl::Span<const int32_t> ids, bool special = true) const;

  int32_t vocab_size() const;
  std::string_view TokenText(int32_t id) const;  // the raw vocabulary entry
  TokenType Type(int32_t id) const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  bool add_bos() const;
  // End of generation: eos, eot, and any control token whose text is <|im_end|>,
  // <|endoftext|>, <|eot_id|>, <|end_of_text|>, </s>, <end_of_turn>, <|end|> (as llama.cpp).
  bool IsEndOfGeneration(int32_t id) const;
  // The token id whose text is exactly `text`, or -1.
  int32_t FindToken(std::string_view text) const;
  const VocabData& vocab() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace anvil

#endif  // ANVIL_MODEL_TOKENIZER_H_
