// Tokenizer: vocabulary checks, llama.cpp's special-token partition, the pre-tokenize + BPE
// pipeline (pretokenizer.h, bpe.h), token_to_piece decoding and the end-of-generation set;
// LoadVocab reads the tokenizer.ggml.* keys. Regex splitting and merging live elsewhere.
#include "model/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/core/status_macros.h"
#include "model/bpe.h"
#include "model/byte_unicode.h"
#include "model/pretokenizer.h"

namespace anvil {
namespace {

// Texts llama.cpp treats as end of generation; it also forces such tokens to CONTROL.
constexpr std::string_view kEogTexts[] = {"<|im_end|>",      "<|endoftext|>", "<|eot_id|>",
                                          "<|end_of_text|>", "</s>",          "<end_of_turn>",
                                          "<|end|>"};

bool IsEogText(std::string_view text) {
  return std::find(std::begin(kEogTexts), std::end(kEogTexts), text) != std::end(kEogTexts);
}

TokenType ToTokenType(int64_t v) {
  return v >= 0 && v <= 6 ? static_cast<TokenType>(v) : TokenType::kUndefined;
}

// Checks everything Create relies on except the merges (BpeModel checks those).
absl::Status ValidateVocab(const VocabData& v) {
  if (v.model != "gpt2") {
    return absl::UnimplementedError(
        absl::StrCat("tokenizer.ggml.model = '", v.model,
                     "' is not supported (only 'gpt2', byte-level BPE, is implemented)"));
  }
  ANVIL_RETURN_IF_ERROR(PreTokenizerFromName(v.pre).status());
  const auto n = static_cast<int64_t>(v.tokens.size());
  if (n == 0) return absl::InvalidArgumentError("vocabulary: no tokens");
  if (!v.types.empty() && static_cast<int64_t>(v.types.size()) != n) {
    return absl::InvalidArgumentError(absl::StrCat("vocabulary: ", v.types.size(),
                                                   " token types for ", n, " tokens"));
  }
  const std::pair<const char*, int32_t> ids[] = {
      {"bos", v.bos_id}, {"eos", v.eos_id}, {"unk", v.unk_id}, {"pad", v.pad_id},
      {"eot", v.eot_id}};
  for (const auto& [name, id] : ids) {
    if (id < -1 || id >= n) {
      return absl::InvalidArgumentError(absl::StrCat("vocabulary: ", name, " token id ", id,
                                                     " is outside [0, ", n, ")"));
    }
  }
  if (v.add_bos && v.bos_id < 0) {
    return absl::InvalidArgumentError("vocabulary: add_bos is set but there is no bos token");
  }
  if (v.add_eos && v.eos_id < 0) {
    return absl::InvalidArgumentError("vocabulary: add_eos is set but there is no eos token");
  }
  return absl::OkStatus();
}

// A raw-text span of the input or an already decided token (special-token partition).
struct Fragment {
  int32_t token;  // -1 for raw text
  size_t begin;
  size_t size;
};

}  // namespace

struct Tokenizer::Impl {
  VocabData vocab;
  PreTokenizer pre = PreTokenizer::kDefault;
  std::unique_ptr<BpeModel> bpe;
  std::vector<TokenType> types;        // effective types (EOG texts forced to control)
  std::vector<int32_t> specials;       // split-out candidates, longest text first
  std::vector<std::string> pieces;     // TokenToPiece(id, /*special=*/true)
  absl::flat_hash_set<int32_t> eog;

  std::string DecodeNormal(const std::string& text) const;
  std::string Piece(int32_t id, bool special) const;
  std::vector<Fragment> Partition(std::string_view text, bool parse_special) const;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Create(VocabData vocab) {
  ANVIL_RETURN_IF_ERROR(ValidateVocab(vocab));
  auto impl = std::make_unique<Impl>();
  impl->pre = *PreTokenizerFromName(vocab.pre);
  const auto n = static_cast<int32_t>(vocab.tokens.size());
  for (int32_t i = 0; i < n; ++i) {
    if (vocab.tokens[i].empty()) vocab.tokens[i] = absl::StrCat("[EMPTY_", i, "]");  // llama.cpp
  }
  ANVIL_ASSIGN_OR_RETURN(impl->bpe, BpeModel::Create(vocab.tokens, vocab.merges));

  impl->types = vocab.types.empty() ? std::vector<TokenType>(n, TokenType::kNormal) : vocab.types;
  for (int32_t i = 0; i < n; ++i) {
    if (IsEogText(vocab.tokens[i])) {
      impl->types[i] = TokenType::kControl;
      impl->eog.insert(i);
    }
    const TokenType t = impl->types[i];
    if (t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown) {
      impl->specials.push_back(i);
    }
  }
  if (vocab.eos_id >= 0) impl->eog.insert(vocab.eos_id);
  if (vocab.eot_id >= 0) impl->eog.insert(vocab.eot_id);
  // Longest first; equal lengths keep id order (llama.cpp's std::sort leaves it unspecified).
  std::stable_sort(impl->specials.begin(), impl->specials.end(), [&](int32_t a, int32_t b) {
    return vocab.tokens[a].size() > vocab.tokens[b].size();
  });
  impl->vocab = std::move(vocab);
  impl->pieces.reserve(n);
  for (int32_t i = 0; i < n; ++i) impl->pieces.push_back(impl->Piece(i, /*special=*/true));
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

// Splits every occurrence of each candidate special token out of the raw fragments, longest
// candidates first, as llama.cpp's tokenizer_st_partition. Without parse_special only
// user-defined tokens are candidates. (LSTRIP/RSTRIP attributes are not in GGUF and are
// ignored.)
std::vector<Fragment> Tokenizer::Impl::Partition(std::string_view text,
                                                 bool parse_special) const {
  std::vector<Fragment> frags = {{-1, 0, text.size()}};
  std::vector<Fragment> next;
  for (int32_t id : specials) {
    if (!parse_special && types[id] != TokenType::kUserDefined) continue;
    const std::string& special = vocab.tokens[id];
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const std::string_view raw = text.substr(f.begin, f.size);
      size_t pos = 0;
      for (size_t m; (m = raw.find(special, pos)) != std::string_view::npos;
           pos = m + special.size()) {
        if (m > pos) next.push_back({-1, f.begin + pos, m - pos});
        next.push_back({id, 0, 0});
      }
      if (pos < raw.size()) next.push_back({-1, f.begin + pos, raw.size() - pos});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  return Encode(text, add_special, parse_special, nullptr);
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special, MergeDropout* dropout) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  if (add_special && im.vocab.add_bos) out.push_back(im.vocab.bos_id);
  if (!text.empty()) {
    const bool ignore_merges = PreTokenizerIgnoresMerges(im.pre);
    std::vector<std::string> pieces;
    for (const Fragment& f : im.Partition(text, parse_special)) {
      if (f.token >= 0) {
        out.push_back(f.token);
        continue;
      }
      pieces.clear();
      PreTokenize(im.pre, text.substr(f.begin, f.size), &pieces);
      for (const std::string& piece : pieces) {
        im.bpe->EncodePiece(piece, ignore_merges, &out, dropout);
      }
    }
  }
  if (add_special && im.vocab.add_eos) out.push_back(im.vocab.eos_id);
  return out;
}

// Maps each code point of a normal token back to its byte; a code point outside the GPT-2
// alphabet is written the way llama.cpp's llama_decode_text writes it.
std::string Tokenizer::Impl::DecodeNormal(const std::string& text) const {
  std::string out;
  for (uint32_t cp : DecodeUtf8Lenient(text)) {
    if (const int b = UnicodeToByte(cp); b >= 0) {
      out.push_back(static_cast<char>(b));
      continue;
    }
    std::string utf8;
    AppendUtf8(cp, &utf8);
    out += "[UNK_BYTE_0x";
    for (unsigned char c : utf8) out += absl::StrFormat("%02x", c);
    out += text + "]";
  }
  return out;
}

std::string Tokenizer::Impl::Piece(int32_t id, bool special) const {
  const std::string& text = vocab.tokens[id];
  switch (types[id]) {
    case TokenType::kControl:
    case TokenType::kUnknown:
      return special ? text : std::string();
    case TokenType::kUserDefined:
      return text;
    case TokenType::kNormal:
      return DecodeNormal(text);
    case TokenType::kByte:  // "<0xXX>"
      if (text.size() == 6 && text.compare(0, 3, "<0x") == 0) {
        return std::string(1, static_cast<char>(std::stoi(text.substr(3, 2), nullptr, 16)));
      }
      return std::string();
    case TokenType::kUndefined:
    case TokenType::kUnused:
      break;
  }
  return std::string();
}

std::string Tokenizer::TokenToPiece(int32_t id, bool special) const {
  if (id < 0 || id >= vocab_size()) return std::string();
  const TokenType t = impl_->types[id];
  if (!special && (t == TokenType::kControl || t == TokenType::kUnknown)) return std::string();
  return impl_->pieces[id];
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool special) const {
  std::string out;
  for (int32_t id : ids) out += TokenToPiece(id, special);
  return out;
}

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->vocab.tokens.size()); }
std::string_view Tokenizer::TokenText(int32_t id) const {
  return id >= 0 && id < vocab_size() ? std::string_view(impl_->vocab.tokens[id])
                                      : std::string_view();
}
TokenType Tokenizer::Type(int32_t id) const {
  return id >= 0 && id < vocab_size() ? impl_->types[id] : TokenType::kUndefined;
}
int32_t Tokenizer::bos_id() const { return impl_->vocab.bos_id; }
int32_t Tokenizer::eos_id() const { return impl_->vocab.eos_id; }
bool Tokenizer::add_bos() const { return impl_->vocab.add_bos; }
bool Tokenizer::IsEndOfGeneration(int32_t id) const { return impl_->eog.contains(id); }
int32_t Tokenizer::FindToken(std::string_view text) const { return impl_->bpe->Find(text); }
const VocabData& Tokenizer::vocab() const { return impl_->vocab; }

absl::StatusOr<VocabData> LoadVocab(const gguf::GgufFile& file) {
  VocabData v;
  ANVIL_ASSIGN_OR_RETURN(v.model, file.GetString("tokenizer.ggml.model"));
  if (file.Has("tokenizer.ggml.pre")) {
    ANVIL_ASSIGN_OR_RETURN(v.pre, file.GetString("tokenizer.ggml.pre"));
  }
  if (v.pre.empty()) v.pre = "default";  // llama.cpp warns and uses "default"
  // Unsupported model / pre-tokenizer: Unimplemented before reading the big arrays.
  if (v.model != "gpt2") return ValidateVocab(v);
  ANVIL_ASSIGN_OR_RETURN(const PreTokenizer pre, PreTokenizerFromName(v.pre));

  ANVIL_ASSIGN_OR_RETURN(const std::vector<std::string>* tokens,
                         file.GetStringArray("tokenizer.ggml.tokens"));
  v.tokens = *tokens;
  const auto n = static_cast<int64_t>(v.tokens.size());
  if (file.Has("tokenizer.ggml.token_type")) {
    ANVIL_ASSIGN_OR_RETURN(const std::vector<int64_t> types,
                           file.GetIntArray("tokenizer.ggml.token_type"));
    if (static_cast<int64_t>(types.size()) != n) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.name(), ": tokenizer.ggml.token_type has ", types.size(),
                       " entries but tokenizer.ggml.tokens has ", n));
    }
    v.types.reserve(types.size());
    for (int64_t t : types) v.types.push_back(ToTokenType(t));
  }
  ANVIL_ASSIGN_OR_RETURN(const std::vector<std::string>* merges,
                         file.GetStringArray("tokenizer.ggml.merges"));
  v.merges = *merges;
  for (size_t i = 0; i < v.merges.size(); ++i) {
    if (v.merges[i].size() < 2 || v.merges[i].find(' ', 1) == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(file.name(), ": tokenizer.ggml.merges[",
                                                     i, "] = '", v.merges[i],
                                                     "' is not 'left right'"));
    }
  }

  // llama.cpp's byte-level BPE defaults bos = eos = 11 when the keys are missing.
  const int32_t bpe_default = n > 11 ? 11 : -1;
  v.bos_id = v.eos_id = bpe_default;
  const std::pair<const char*, int32_t*> ids[] = {
      {"tokenizer.ggml.bos_token_id", &v.bos_id},     {"tokenizer.ggml.eos_token_id", &v.eos_id},
      {"tokenizer.ggml.unknown_token_id", &v.unk_id}, {"tokenizer.ggml.padding_token_id", &v.pad_id},
      {"tokenizer.ggml.eot_token_id", &v.eot_id}};
  for (const auto& [key, id] : ids) {
    if (!file.Has(key)) continue;
    ANVIL_ASSIGN_OR_RETURN(const int64_t value, file.GetInt(key));
    if (value < 0 || value >= n) {
      return absl::InvalidArgumentError(absl::StrCat(file.name(), ": ", key, " = ", value,
                                                     " is outside the vocabulary [0, ", n, ")"));
    }
    *id = static_cast<int32_t>(value);
  }
  v.add_bos = PreTokenizerAddsBos(pre);
  if (file.Has("tokenizer.ggml.add_bos_token")) {
    ANVIL_ASSIGN_OR_RETURN(v.add_bos, file.GetBool("tokenizer.ggml.add_bos_token"));
  }
  if (file.Has("tokenizer.ggml.add_eos_token")) {
    ANVIL_ASSIGN_OR_RETURN(v.add_eos, file.GetBool("tokenizer.ggml.add_eos_token"));
  }
  ANVIL_RETURN_IF_ERROR(ValidateVocab(v));
  return v;
}

}  // namespace anvil
