// Hyper-parameters of a llama-family model, read from GGUF metadata (`llama.*` keys, notes §2.1)
// with llama.cpp's defaults for optional keys.
#ifndef ANVIL_MODEL_LLAMA_CONFIG_H_
#define ANVIL_MODEL_LLAMA_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/gguf.h"

namespace anvil {

struct LlamaConfig {
  std::string architecture;   // "llama"
  int64_t n_vocab = 0;        // tokens in the vocabulary (token_embd rows)
  int64_t n_ctx_train = 0;    // context length the model was trained with
  int64_t n_embd = 0;         // C
  int64_t n_layer = 0;
  int64_t n_head = 0;         // H
  int64_t n_head_kv = 0;      // Hkv
  int64_t head_dim = 0;       // D = n_embd / n_head
  int64_t n_ff = 0;           // F
  int64_t n_rot = 0;          // rotated dims per head (== D for llama)
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  bool rope_neox = false;     // llama: NORM (adjacent pairs)
  bool tied_embeddings = false;

  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_head_kv * head_dim; }
};

// InvalidArgument for missing/inconsistent keys (naming the file and key); Unimplemented for
// architectures or RoPE scaling we do not run.
absl::StatusOr<LlamaConfig> ReadLlamaConfig(const gguf::GgufFile& file);

}  // namespace anvil

#endif  // ANVIL_MODEL_LLAMA_CONFIG_H_
