// Adapter loading for the engine: the llama.cpp LoRA GGUF and PEFT readers of train/adapter_read.h
// (the ones `anvil merge` uses), then each pair checked against the loaded base matrices and
// indexed by (layer, module).
#include "server/adapter_store.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "train/adapter_read.h"

namespace anvil::server {
namespace {

// The base model's matrix for (layer, module).
const WeightMatrix* BaseMatrix(const LlamaModel& model, int64_t layer, LoraModule m) {
  if (layer < 0 || layer >= model.config().n_layer) return nullptr;
  const LayerWeights& lw = model.weights().layers[static_cast<size_t>(layer)];
  switch (m) {
    case LoraModule::kQ: return &lw.wq;
    case LoraModule::kK: return &lw.wk;
    case LoraModule::kV: return &lw.wv;
    case LoraModule::kO: return &lw.wo;
    case LoraModule::kGate: return &lw.w_gate;
    case LoraModule::kUp: return &lw.w_up;
    case LoraModule::kDown: return &lw.w_down;
  }
  return nullptr;
}

// Checks one pair against the loaded base matrix and files it.
absl::Status AddPair(const LlamaModel& model, const std::string& file, LoraPair pair,
                     float scale, AdapterWeights* a) {
  const std::string what = absl::StrCat("blk.", pair.layer, ".", GgufSuffix(pair.module));
  const WeightMatrix* base = BaseMatrix(model, pair.layer, pair.module);
  if (base == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": ", what, ": layer ", pair.layer, " is not in the base model"));
  }
  if (pair.rank <= 0 || pair.rows != base->rows || pair.cols != base->cols ||
      static_cast<int64_t>(pair.a.size()) != pair.rank * pair.cols ||
      static_cast<int64_t>(pair.b.size()) != pair.rows * pair.rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": ", what, ": A is [", pair.rank, "][", pair.cols, "] and B [", pair.rows, "][",
        pair.rank, "] but ", base->name, " is [", base->rows, "][", base->cols, "]"));
  }
  auto& slot = a->by_layer[static_cast<size_t>(pair.layer)][static_cast<size_t>(pair.module)];
  if (slot >= 0) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": ", what, ": adapted twice"));
  }
  slot = static_cast<int32_t>(a->matrices.size());
  a->matrices.push_back({std::move(pair), scale});
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<const AdapterWeights>> LoadAdapterWeights(
    const LlamaModel& model, const std::string& name, const std::string& path, uint64_t key) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  auto a = std::make_shared<AdapterWeights>();
  a->name = name;
  a->key = key;
  std::array<int32_t, 7> none;
  none.fill(-1);
  a->by_layer.assign(static_cast<size_t>(model.config().n_layer), none);
  // The formats are read by the same code `anvil merge` uses (train/adapter_read.h); a PEFT
  // .safetensors file stands for its directory (adapter_config.json sits next to it).
  std::string source = path;
  if (!fs::is_directory(path, ec) && absl::EndsWith(path, ".safetensors")) {
    source = fs::path(path).parent_path().string();
  }
  ANVIL_ASSIGN_OR_RETURN(LoraAdapters lora, train::ReadAdapter(source, model.file()));
  const float scale = lora.config.scale();
  for (LoraPair& pair : lora.pairs) {
    ANVIL_RETURN_IF_ERROR(AddPair(model, path, std::move(pair), scale, a.get()));
  }
  if (a->matrices.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the adapter has no LoRA tensors"));
  }
  return a;
}

}  // namespace anvil::server
