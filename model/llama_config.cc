// Reads llama.* hyper-parameters from GGUF metadata and checks them for consistency.
#include "model/llama_config.h"

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"

namespace anvil {
namespace {

constexpr int64_t kMaxDim = int64_t{1} << 20;

absl::StatusOr<int64_t> PositiveInt(const gguf::GgufFile& f, const std::string& key,
                                    int64_t max = kMaxDim) {
  ANVIL_ASSIGN_OR_RETURN(int64_t v, f.GetInt(key));
  if (v <= 0 || v > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.name(), ": ", key, " = ", v, " is outside [1, ", max, "]"));
  }
  return v;
}

}  // namespace

absl::StatusOr<LlamaConfig> ReadLlamaConfig(const gguf::GgufFile& f) {
  LlamaConfig c;
  ANVIL_ASSIGN_OR_RETURN(c.architecture, f.GetString("general.architecture"));
  if (c.architecture != "llama") {
    return absl::UnimplementedError(absl::StrCat(f.name(), ": architecture '", c.architecture,
                                                 "' is not supported (supported: llama)"));
  }
  const std::string p = "llama.";
  ANVIL_ASSIGN_OR_RETURN(c.n_embd, PositiveInt(f, p + "embedding_length"));
  ANVIL_ASSIGN_OR_RETURN(c.n_layer, PositiveInt(f, p + "block_count", 4096));
  ANVIL_ASSIGN_OR_RETURN(c.n_head, PositiveInt(f, p + "attention.head_count", 4096));
  ANVIL_ASSIGN_OR_RETURN(c.n_ff, PositiveInt(f, p + "feed_forward_length"));
  ANVIL_ASSIGN_OR_RETURN(c.n_ctx_train, PositiveInt(f, p + "context_length", int64_t{1} << 24));
  c.n_head_kv = c.n_head;
  if (f.Has(p + "attention.head_count_kv")) {
    ANVIL_ASSIGN_OR_RETURN(c.n_head_kv, PositiveInt(f, p + "attention.head_count_kv", 4096));
  }
  if (c.n_embd % c.n_head != 0 || c.n_head % c.n_head_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        f.name(), ": embedding_length ", c.n_embd, ", head_count ", c.n_head,
        " and head_count_kv ", c.n_head_kv, " do not divide evenly"));
  }
  c.head_dim = c.n_embd / c.n_head;
  if (f.Has(p + "attention.key_length")) {
    ANVIL_ASSIGN_OR_RETURN(int64_t kl, PositiveInt(f, p + "attention.key_length"));
    if (kl != c.head_dim) {
      return absl::UnimplementedError(absl::StrCat(
          f.name(), ": attention.key_length ", kl, " != embedding_length/head_count ", c.head_dim));
    }
  }
  c.n_rot = c.head_dim;
  if (f.Has(p + "rope.dimension_count")) {
    ANVIL_ASSIGN_OR_RETURN(c.n_rot, PositiveInt(f, p + "rope.dimension_count"));
  }
  if (c.n_rot != c.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(f.name(), ": rope.dimension_count ", c.n_rot,
                                                   " must equal the head dimension ", c.head_dim));
  }
  if (f.Has(p + "rope.freq_base")) {
    ANVIL_ASSIGN_OR_RETURN(double base, f.GetFloat(p + "rope.freq_base"));
    if (!(base > 0.0)) {
      return absl::InvalidArgumentError(absl::StrCat(f.name(), ": rope.freq_base must be > 0"));
    }
    c.rope_freq_base = static_cast<float>(base);
  }
  ANVIL_ASSIGN_OR_RETURN(double eps, f.GetFloat(p + "attention.layer_norm_rms_epsilon"));
  if (!(eps > 0.0) || eps > 1.0) {
    return absl::InvalidArgumentError(
        absl::StrCat(f.name(), ": attention.layer_norm_rms_epsilon = ", eps, " is invalid"));
  }
  c.rms_eps = static_cast<float>(eps);
  if (f.Has(p + "rope.scaling.type")) {
    ANVIL_ASSIGN_OR_RETURN(std::string type, f.GetString(p + "rope.scaling.type"));
    if (type != "none") {
      return absl::UnimplementedError(
          absl::StrCat(f.name(), ": rope scaling '", type, "' is not supported yet"));
    }
  }
  const gguf::TensorInfo* emb = f.FindTensor("token_embd.weight");
  if (emb == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(f.name(), ": tensor token_embd.weight is missing"));
  }
  if (emb->shape.size() != 2 || emb->shape[0] != c.n_embd) {
    return absl::InvalidArgumentError(absl::StrCat(
        f.name(), ": token_embd.weight must have shape [", c.n_embd, ", n_vocab]"));
  }
  c.n_vocab = emb->shape[1];
  c.tied_embeddings = f.FindTensor("output.weight") == nullptr;
  return c;
}

}  // namespace anvil
