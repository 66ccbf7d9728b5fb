// LoRA adapters (notes §5.2): the configuration (rank, alpha, dropout, target modules) and one
// adapter pair per adapted weight matrix, in the base weight's GGUF orientation:
//   W' = W + scale * B A,   A [r][in], B [out][r],   scale = alpha / r (alpha / sqrt(r) with
//   rslora). Forward y = W x + scale * B (A x). PEFT's layout is the same ([r][in] and [out][r]);
// only attn_q/attn_k rows differ in order, because GGUF permutes those rows for NORM RoPE
// (exports undo it, see train/export.h). Training the adapters is model/trainable_llama.h's job.
#ifndef ANVIL_MODEL_LORA_H_
#define ANVIL_MODEL_LORA_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace anvil {

// The seven llama linear modules LoRA can adapt, by their short names; the GGUF tensor of module
// m in layer l is "blk.<l>.<GgufSuffix(m)>.weight" and its PEFT module is
// "model.layers.<l>.<PeftPath(m)>".
enum class LoraModule { kQ, kK, kV, kO, kGate, kUp, kDown };
inline constexpr LoraModule kAllLoraModules[] = {LoraModule::kQ,    LoraModule::kK,
                                                 LoraModule::kV,    LoraModule::kO,
                                                 LoraModule::kGate, LoraModule::kUp,
                                                 LoraModule::kDown};
inline const char* LoraModuleName(LoraModule m) {  // "q", "k", ... as recipes spell them
  static const char* const kNames[] = {"q", "k", "v", "o", "gate", "up", "down"};
  return kNames[static_cast<int>(m)];
}
inline const char* GgufSuffix(LoraModule m) {
  static const char* const kNames[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                       "ffn_gate", "ffn_up", "ffn_down"};
  return kNames[static_cast<int>(m)];
}
inline const char* PeftPath(LoraModule m) {
  static const char* const kNames[] = {"self_attn.q_proj", "self_attn.k_proj",
                                       "self_attn.v_proj", "self_attn.o_proj",
                                       "mlp.gate_proj",    "mlp.up_proj",
                                       "mlp.down_proj"};
  return kNames[static_cast<int>(m)];
}

struct LoraConfig {
  int64_t rank = 8;
  float alpha = 8.0f;
  float dropout = 0.0f;  // on the LoRA branch's input only, training only
  bool rslora = false;
  std::vector<LoraModule> targets = {LoraModule::kQ, LoraModule::kV};  // PEFT's llama default
  float scale() const {
    return rslora ? alpha / std::sqrt(static_cast<float>(rank)) : alpha / static_cast<float>(rank);
  }
};

// One adapted matrix. a and b are row-major float.
struct LoraPair {
  int64_t layer = 0;
  LoraModule module = LoraModule::kQ;
  int64_t rows = 0;  // out
  int64_t cols = 0;  // in
  int64_t rank = 0;
  std::vector<float> a;  // [rank][cols]
  std::vector<float> b;  // [rows][rank]
  // "blk.<layer>.<suffix>.weight": the base tensor this pair adapts.
  std::string BaseName() const {
    return "blk." + std::to_string(layer) + "." + GgufSuffix(module) + ".weight";
  }
};

struct LoraAdapters {
  LoraConfig config;
  std::vector<LoraPair> pairs;  // ordered by layer, then module as in kAllLoraModules
};

}  // namespace anvil

#endif  // ANVIL_MODEL_LORA_H_
