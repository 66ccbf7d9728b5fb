// The tiny llama generator: vocabulary, metadata and seeded weights (splitmix64 -> uniform floats
// with exact arithmetic, so the bytes do not depend on the platform or the standard library),
// quantized with the reference quantizers.
#include "model/tiny_model.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/half.h"
#include "kernels/core/status_macros.h"
#include "kernels/quantize.h"
#include "model/byte_unicode.h"
#include "model/splitmix64.h"

namespace anvil {

const char kTinyChatTemplate[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}";

std::vector<TinyLayerTypes> DefaultTinyLayerTypes() {
  // ggml ids: F16 1, Q4_0 2, Q4_1 3, Q8_0 8, BF16 30.
  return {
      {/*attn_q=*/3, /*attn_k=*/3, /*attn_v=*/1, /*attn_output=*/3, /*ffn_gate=*/3,
       /*ffn_up=*/3, /*ffn_down=*/3},
      {/*attn_q=*/2, /*attn_k=*/2, /*attn_v=*/2, /*attn_output=*/30, /*ffn_gate=*/2,
       /*ffn_up=*/2, /*ffn_down=*/8},
  };
}

namespace {

// Common English pairs as raw bytes, ordered so that both sides of every merge already exist
// (so any prefix of the list is a valid merge table).
constexpr std::pair<const char*, const char*> kMerges[kTinyMaxMerges] = {
    {" ", "t"},  {"h", "e"},   {" ", "a"},  {"i", "n"},  {"t", "h"},  {"e", "r"},
    {"o", "n"},  {" t", "he"}, {"r", "e"},  {"a", "n"},  {" ", "s"},  {" ", "w"},
    {"o", "u"},  {"a", "t"},   {"e", "n"},  {" ", "o"},  {"i", "s"},  {" ", "c"},
    {"i", "t"},  {"o", "r"},   {"e", "s"},  {"e", "d"},  {" ", "b"},  {" ", "f"},
    {"in", "g"}, {" ", "p"},   {"a", "r"},  {" ", "m"},  {"a", "l"},  {" ", "d"},
    {" ", "h"},  {"l", "e"},   {" ", "i"},  {" o", "f"}, {" a", "n"}, {" an", "d"},
    {" t", "o"}, {" i", "n"},  {" i", "s"}, {"l", "l"},  {" ", "l"},  {" ", "n"},
    {"o", "m"},  {" ", "y"},   {" y", "ou"}, {"\n", "\n"}, {" ", " "}, {" ", "H"},
};

constexpr uint32_t kF32 = 0;

// Raw bytes -> their GPT-2 byte-to-unicode text.
std::string ByteLevel(std::string_view raw) {
  std::string out;
  for (char c : raw) out += ByteToUnicodeUtf8(static_cast<uint8_t>(c));
  return out;
}

uint64_t Fnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

// n values offset + scale * u, u uniform in [-0.5, 0.5). u is an exact multiple of 2^-24 and
// the combination is one correctly rounded fma, so the result is the same everywhere. Each
// tensor has its own stream (seed ^ hash of its name): changing one tensor's type or shape does
// not change the others.
std::vector<float> RandomValues(uint64_t seed, const std::string& name, int64_t n, float scale,
                                float offset) {
  uint64_t state = seed ^ Fnv1a(name);
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) {
    const float u = static_cast<float>(SplitMix64Next(&state) >> 40) * 0x1p-24f - 0.5f;
    v[i] = std::fma(scale, u, offset);
  }
  return v;
}

// x: [rows, ne0] floats -> the bytes of a ggml tensor of `type` with ne = [ne0, rows].
absl::StatusOr<std::string> Encode(const std::string& name, uint32_t type,
                                   const std::vector<float>& x, int64_t ne0) {
  const std::optional<DType> dt = gguf::ToDType(type);
  if (!dt.has_value()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tiny model: tensor ", name, ": ggml type ", type, " is not supported"));
  }
  absl::StatusOr<int64_t> row_bytes = RowBytes(*dt, ne0);
  if (!row_bytes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tiny model: tensor ", name, ": ", row_bytes.status().message()));
  }
  const int64_t rows = static_cast<int64_t>(x.size()) / ne0;
  std::string out(rows * *row_bytes, '\0');
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x.data() + r * ne0;
    char* dst = out.data() + r * *row_bytes;
    switch (*dt) {
      case DType::kF32:
        std::memcpy(dst, src, ne0 * sizeof(float));
        break;
      case DType::kF16:
      case DType::kBF16:
        for (int64_t i = 0; i < ne0; ++i) {
          const uint16_t h = *dt == DType::kF16 ? FloatToHalf(src[i]) : FloatToBf16(src[i]);
          std::memcpy(dst + 2 * i, &h, 2);
        }
        break;
      case DType::kQ8_0:
        QuantizeRowQ8_0(src, reinterpret_cast<BlockQ8_0*>(dst), ne0);
        break;
      case DType::kQ4_0:
        QuantizeRowQ4_0(src, reinterpret_cast<BlockQ4_0*>(dst), ne0);
        break;
      case DType::kQ4_1:
        QuantizeRowQ4_1(src, reinterpret_cast<BlockQ4_1*>(dst), ne0);
        break;
    }
  }
  return out;
}

// Adds one tensor of shape [ne0, ne1] with seeded values.
absl::Status AddRandom(const TinyModelConfig& cfg, gguf::GgufWriter* w, const std::string& name,
                       std::vector<int64_t> shape, uint32_t type, float scale, float offset) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  const std::vector<float> x = RandomValues(cfg.seed, name, n, scale, offset);
  ANVIL_ASSIGN_OR_RETURN(std::string bytes,
                         Encode(name, cfg.all_f32 ? kF32 : type, x, shape[0]));
  return w->AddTensor(name, std::move(shape), cfg.all_f32 ? kF32 : type, std::move(bytes));
}

absl::Status ValidateConfig(const TinyModelConfig& cfg) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("tiny model config: ", what));
  };
  if (cfg.n_embd < 1 || cfg.n_layer < 1 || cfg.n_head < 1 || cfg.n_head_kv < 1 ||
      cfg.n_ff < 1 || cfg.context_length < 1) {
    return bad("every size must be positive");
  }
  if (cfg.n_embd % cfg.n_head != 0) return bad("n_embd must be a multiple of n_head");
  if (cfg.n_head % cfg.n_head_kv != 0) return bad("n_head must be a multiple of n_head_kv");
  if ((cfg.n_embd / cfg.n_head) % 2 != 0) return bad("head_dim must be even (RoPE pairs)");
  if (cfg.n_merges < 0 || cfg.n_merges > kTinyMaxMerges) {
    return bad(absl::StrCat("n_merges must be in 0..", kTinyMaxMerges));
  }
  if (!(cfg.rope_freq_base > 0.0f) || !(cfg.rms_eps > 0.0f)) {
    return bad("rope_freq_base and rms_eps must be positive");
  }
  if (!cfg.all_f32 && cfg.layer_types.empty()) return bad("layer_types is empty");
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TinyVocab> MakeTinyVocab(const TinyModelConfig& cfg) {
  ANVIL_RETURN_IF_ERROR(ValidateConfig(cfg));
  TinyVocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(ByteToUnicodeUtf8(static_cast<uint8_t>(b)));
  v.token_types.assign(256, 1);
  absl::flat_hash_set<std::string> known(v.tokens.begin(), v.tokens.end());
  for (int i = 0; i < cfg.n_merges; ++i) {
    const std::string left = ByteLevel(kMerges[i].first);
    const std::string right = ByteLevel(kMerges[i].second);
    const std::string result = left + right;
    if (!known.contains(left) || !known.contains(right) || known.contains(result)) {
      return absl::InternalError(absl::StrCat("tiny model: built-in merge ", i, " is invalid"));
    }
    known.insert(result);
    v.merges.push_back(absl::StrCat(left, " ", right));
    v.tokens.push_back(result);
    v.token_types.push_back(1);
  }
  v.endoftext_id = static_cast<int32_t>(v.tokens.size());
  v.im_start_id = v.endoftext_id + 1;
  v.im_end_id = v.endoftext_id + 2;
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    v.tokens.push_back(special);
    v.token_types.push_back(3);
  }
  return v;
}

absl::Status BuildTinyLlama(const TinyModelConfig& cfg, gguf::GgufWriter* w) {
  using gguf::Value;
  ANVIL_ASSIGN_OR_RETURN(TinyVocab vocab, MakeTinyVocab(cfg));  // validates cfg
  const int64_t n_vocab = static_cast<int64_t>(vocab.tokens.size());
  const int head_dim = cfg.n_embd / cfg.n_head;
  const auto u32 = [](int64_t x) { return Value::Uint32(static_cast<uint32_t>(x)); };

  w->Set("general.architecture", Value::String("llama"));
  w->Set("general.type", Value::String("model"));
  w->Set("general.name", Value::String("anvil tiny llama"));
  w->Set("general.file_type", u32(cfg.all_f32 ? 0 : cfg.file_type));
  w->Set("general.quantization_version", u32(2));
  w->Set("llama.context_length", u32(cfg.context_length));
  w->Set("llama.embedding_length", u32(cfg.n_embd));
  w->Set("llama.block_count", u32(cfg.n_layer));
  w->Set("llama.feed_forward_length", u32(cfg.n_ff));
  w->Set("llama.attention.head_count", u32(cfg.n_head));
  w->Set("llama.attention.head_count_kv", u32(cfg.n_head_kv));
  w->Set("llama.rope.freq_base", Value::Float32(cfg.rope_freq_base));
  w->Set("llama.attention.layer_norm_rms_epsilon", Value::Float32(cfg.rms_eps));
  w->Set("llama.rope.dimension_count", u32(head_dim));
  w->Set("llama.vocab_size", u32(n_vocab));
  w->Set("tokenizer.ggml.model", Value::String("gpt2"));
  w->Set("tokenizer.ggml.pre", Value::String("smollm"));
  w->Set("tokenizer.ggml.tokens", Value::StringArray(vocab.tokens));
  w->Set("tokenizer.ggml.token_type", Value::Int32Array(vocab.token_types));
  w->Set("tokenizer.ggml.merges", Value::StringArray(vocab.merges));
  w->Set("tokenizer.ggml.bos_token_id", u32(vocab.im_start_id));
  w->Set("tokenizer.ggml.eos_token_id", u32(vocab.im_end_id));
  w->Set("tokenizer.ggml.padding_token_id", u32(vocab.im_end_id));
  w->Set("tokenizer.ggml.add_bos_token", Value::Bool(false));
  w->Set("tokenizer.chat_template", Value::String(kTinyChatTemplate));

  // Matrices: uniform with std 0.58 / sqrt(fan_in) (fan_in = ne[0]), so each block adds about
  // as much to the residual stream as the embedding (std 0.29); RMSNorm keeps it bounded, and
  // logits (embeddings uniform(-0.5, 0.5) against a normed state) have a std of about 2. With
  // tied embeddings the input token itself usually wins the argmax. tests/fixtures/
  // tiny_model.json was generated from exactly these bytes: changing any value here means
  // regenerating it (scripts/reference/llamacpp_golden.sh --only tiny).
  const auto matrix_scale = [](int64_t fan_in) {
    return 2.0f / std::sqrt(static_cast<float>(fan_in));
  };
  const int64_t E = cfg.n_embd, F = cfg.n_ff, q_out = int64_t{cfg.n_head} * head_dim,
                kv_out = int64_t{cfg.n_head_kv} * head_dim;
  ANVIL_RETURN_IF_ERROR(
      AddRandom(cfg, w, "token_embd.weight", {E, n_vocab}, cfg.token_embd_type, 1.0f, 0.0f));
  for (int l = 0; l < cfg.n_layer; ++l) {
    const TinyLayerTypes t =
        cfg.all_f32 ? TinyLayerTypes{0, 0, 0, 0, 0, 0, 0}
                    : cfg.layer_types[l % cfg.layer_types.size()];
    const std::string p = absl::StrCat("blk.", l, ".");
    // Norm weights 1 + uniform(-0.1, 0.1): close to identity but not trivially 1.
    ANVIL_RETURN_IF_ERROR(AddRandom(cfg, w, p + "attn_norm.weight", {E}, kF32, 0.2f, 1.0f));
    ANVIL_RETURN_IF_ERROR(
        AddRandom(cfg, w, p + "attn_q.weight", {E, q_out}, t.attn_q, matrix_scale(E), 0.0f));
    ANVIL_RETURN_IF_ERROR(
        AddRandom(cfg, w, p + "attn_k.weight", {E, kv_out}, t.attn_k, matrix_scale(E), 0.0f));
    ANVIL_RETURN_IF_ERROR(
        AddRandom(cfg, w, p + "attn_v.weight", {E, kv_out}, t.attn_v, matrix_scale(E), 0.0f));
    ANVIL_RETURN_IF_ERROR(AddRandom(cfg, w, p + "attn_output.weight", {q_out, E},
                                    t.attn_output, matrix_scale(q_out), 0.0f));
    ANVIL_RETURN_IF_ERROR(AddRandom(cfg, w, p + "ffn_norm.weight", {E}, kF32, 0.2f, 1.0f));
    ANVIL_RETURN_IF_ERROR(
        AddRandom(cfg, w, p + "ffn_gate.weight", {E, F}, t.ffn_gate, matrix_scale(E), 0.0f));
    ANVIL_RETURN_IF_ERROR(
        AddRandom(cfg, w, p + "ffn_up.weight", {E, F}, t.ffn_up, matrix_scale(E), 0.0f));
    ANVIL_RETURN_IF_ERROR(
        AddRandom(cfg, w, p + "ffn_down.weight", {F, E}, t.ffn_down, matrix_scale(F), 0.0f));
  }
  ANVIL_RETURN_IF_ERROR(AddRandom(cfg, w, "output_norm.weight", {E}, kF32, 0.2f, 1.0f));
  if (!cfg.tied_embeddings) {
    ANVIL_RETURN_IF_ERROR(
        AddRandom(cfg, w, "output.weight", {E, n_vocab}, cfg.output_type, 1.0f, 0.0f));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MakeTinyLlamaGguf(const TinyModelConfig& cfg) {
  gguf::GgufWriter w;
  ANVIL_RETURN_IF_ERROR(BuildTinyLlama(cfg, &w));
  return w.Serialize();
}

absl::Status WriteTinyLlamaGguf(const TinyModelConfig& cfg, const std::string& path) {
  gguf::GgufWriter w;
  ANVIL_RETURN_IF_ERROR(BuildTinyLlama(cfg, &w));
  return w.WriteFile(path);
}

}  // namespace anvil
