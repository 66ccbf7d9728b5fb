// A deterministic tiny llama-family GGUF for tests and the llama.cpp oracle: fixed-seed weights
// from our own PRNG (identical bytes on every platform), a byte-level BPE vocabulary (256 byte
// tokens, a few dozen English merges, ChatML control tokens) and SmolLM-style metadata that
// llama.cpp loads. Running the model is the transformer's business, not this file's.
#ifndef ANVIL_MODEL_TINY_MODEL_H_
#define ANVIL_MODEL_TINY_MODEL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/gguf_writer.h"

namespace anvil {

// ggml type ids of the seven matrices of one layer.
struct TinyLayerTypes {
  uint32_t attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down;
};

// Default per-layer mix, chosen to exercise every type the kernels compute with:
// layer 0: Q4_1 except attn_v F16; layer 1: Q4_0 except attn_output BF16 and ffn_down Q8_0.
std::vector<TinyLayerTypes> DefaultTinyLayerTypes();

inline constexpr int kTinyMaxMerges = 48;  // size of the built-in merge list

struct TinyModelConfig {
  int n_embd = 64;
  int n_layer = 2;
  int n_head = 4;
  int n_head_kv = 2;  // head_dim = n_embd / n_head = 16
  int n_ff = 96;
  int context_length = 256;
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  uint64_t seed = 42;
  int n_merges = kTinyMaxMerges;  // how many of the built-in merges to use (0..kTinyMaxMerges)
  bool tied_embeddings = true;    // false: also write an explicit output.weight
  bool all_f32 = false;           // every tensor F32 (the type choices below are ignored)
  uint32_t token_embd_type = 8;   // Q8_0
  uint32_t output_type = 0;       // F32; only used when !tied_embeddings
  // Layer i uses layer_types[i % size()]. Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1.
  std::vector<TinyLayerTypes> layer_types = DefaultTinyLayerTypes();
  uint32_t file_type = 3;  // general.file_type (informational); all_f32 writes 0
};

// The tokenizer the generator writes. Token ids: 0..255 are the bytes in GPT-2 byte-to-unicode
// form (notes §3.2), then one token per merge (its result), then <|endoftext|>, <|im_start|>
// (bos) and <|im_end|> (eos, padding) as CONTROL tokens.
struct TinyVocab {
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // 1 normal, 3 control
  std::vector<std::string> merges;   // "left right", rank = index
  int32_t endoftext_id = 0;
  int32_t im_start_id = 0;
  int32_t im_end_id = 0;
};
absl::StatusOr<TinyVocab> MakeTinyVocab(const TinyModelConfig& cfg);

// The ChatML template written as tokenizer.chat_template (no default system prompt).
extern const char kTinyChatTemplate[];

// Fills `writer` with the model's metadata and tensors. InvalidArgument for an inconsistent
// config (e.g. n_embd not divisible by n_head, a quantized matrix whose row is not a multiple
// of 32, an unsupported type).
absl::Status BuildTinyLlama(const TinyModelConfig& cfg, gguf::GgufWriter* writer);
// The whole GGUF file.
absl::StatusOr<std::string> MakeTinyLlamaGguf(const TinyModelConfig& cfg);
// Writes it atomically to `path`.
absl::Status WriteTinyLlamaGguf(const TinyModelConfig& cfg, const std::string& path);

}  // namespace anvil

#endif  // ANVIL_MODEL_TINY_MODEL_H_
