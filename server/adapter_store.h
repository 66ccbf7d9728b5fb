// LoRA adapters for the engine: loading a llama.cpp adapter GGUF or a PEFT directory into
// per-(layer, module) float A/B pairs on the base model's GGUF orientation, checked against the
// base model's shapes.
#ifndef ANVIL_SERVER_ADAPTER_STORE_H_
#define ANVIL_SERVER_ADAPTER_STORE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/llama_model.h"
#include "model/lora.h"

namespace anvil::server {

// One adapted matrix: y += scale * B (A x), A [rank][in], B [out][rank] (GGUF row order).
struct AdaptedMatrix {
  LoraPair pair;
  float scale = 1.0f;
};

struct AdapterWeights {
  std::string name;
  uint64_t key = 0;  // unique per load (prefix-cache separation); never 0
  std::vector<AdaptedMatrix> matrices;
  // by_layer[layer][module]: index into `matrices`, or -1 when that matrix is not adapted.
  std::vector<std::array<int32_t, 7>> by_layer;
  const AdaptedMatrix* Find(int64_t layer, LoraModule m) const {
    if (layer < 0 || layer >= static_cast<int64_t>(by_layer.size())) return nullptr;
    const int32_t i = by_layer[static_cast<size_t>(layer)][static_cast<size_t>(m)];
    return i < 0 ? nullptr : &matrices[static_cast<size_t>(i)];
  }
};

// Loads `path`: a file ending in .gguf (llama.cpp LoRA adapter), a PEFT directory with
// adapter_model.safetensors + adapter_config.json, or such a .safetensors file (its directory
// holds the config). InvalidArgument (naming the file and tensor) for a malformed adapter or one
// whose shapes do not fit `model`; NotFound when the path does not exist.
absl::StatusOr<std::shared_ptr<const AdapterWeights>> LoadAdapterWeights(
    const LlamaModel& model, const std::string& name, const std::string& path, uint64_t key);

}  // namespace anvil::server

#endif  // ANVIL_SERVER_ADAPTER_STORE_H_
