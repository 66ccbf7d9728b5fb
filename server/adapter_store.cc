// Adapter loading: llama.cpp LoRA GGUF ("<base tensor>.lora_a" ne [in, r], ".lora_b" ne [r, out],
// scale adapter.lora.alpha / r, or 1 without alpha) and PEFT (adapter_model.safetensors with
// lora_A [r][in] / lora_B [out][r] in HF row order + adapter_config.json: r, lora_alpha,
// use_rslora).
#include "server/adapter_store.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/core/status_macros.h"
#include "kernels/quantize.h"
#include "model/gguf.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"
#include "train/export.h"

namespace anvil::server {
namespace {

// "blk.<l>.<suffix>.weight" -> (l, module).
bool ParseBaseName(const std::string& base, int64_t* layer, LoraModule* module) {
  std::vector<std::string> parts = absl::StrSplit(base, '.');
  if (parts.size() != 4 || parts[0] != "blk" || parts[3] != "weight") return false;
  if (!absl::SimpleAtoi(parts[1], layer)) return false;
  for (LoraModule m : kAllLoraModules) {
    if (parts[2] == GgufSuffix(m)) {
      *module = m;
      return true;
    }
  }
  return false;
}

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

absl::StatusOr<std::vector<float>> GgufFloats(const gguf::GgufFile& f,
                                              const gguf::TensorInfo& t) {
  std::optional<DType> dt = gguf::ToDType(t.ggml_type);
  if (!dt.has_value() || t.shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        f.name(), ": tensor ", t.name, " must be a 2-D F32/F16/BF16/Q8_0/Q4_0/Q4_1 matrix"));
  }
  const int64_t cols = t.shape[0], rows = t.shape[1];
  if (cols % BlockElems(*dt) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(f.name(), ": tensor ", t.name, " has ", cols,
                                                   " columns, not a multiple of its block"));
  }
  std::vector<float> out(static_cast<size_t>(rows * cols));
  const int64_t row_bytes = cols / BlockElems(*dt) * BlockBytes(*dt);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(*dt, t.data + r * row_bytes, out.data() + r * cols, cols);
  }
  return out;
}

// Checks one pair against the base matrix and files it.
absl::Status AddPair(const LlamaModel& model, const std::string& file, const std::string& what,
                     LoraPair pair, float scale, AdapterWeights* a) {
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

absl::Status LoadGguf(const LlamaModel& model, const std::string& path, AdapterWeights* a) {
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> f, gguf::GgufFile::Open(path));
  if (f->Has("adapter.type")) {
    ANVIL_ASSIGN_OR_RETURN(std::string type, f->GetString("adapter.type"));
    if (type != "lora") {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": adapter.type is '", type, "', not 'lora'"));
    }
  }
  if (f->Has("general.architecture") && model.file().Has("general.architecture")) {
    ANVIL_ASSIGN_OR_RETURN(std::string arch, f->GetString("general.architecture"));
    ANVIL_ASSIGN_OR_RETURN(std::string base_arch,
                           model.file().GetString("general.architecture"));
    if (arch != base_arch) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": general.architecture '", arch, "' does not match the base model's '",
          base_arch, "'"));
    }
  }
  float alpha = 0;
  if (f->Has("adapter.lora.alpha")) {
    ANVIL_ASSIGN_OR_RETURN(double al, f->GetFloat("adapter.lora.alpha"));
    alpha = static_cast<float>(al);
  }
  for (const gguf::TensorInfo& t : f->tensors()) {
    if (absl::EndsWith(t.name, ".lora_b")) {
      const std::string base = t.name.substr(0, t.name.size() - 7);
      if (f->FindTensor(base + ".lora_a") == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": tensor ", t.name, " has no matching ", base, ".lora_a"));
      }
      continue;
    }
    if (!absl::EndsWith(t.name, ".lora_a")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", t.name, " is not a LoRA tensor (.lora_a/.lora_b)"));
    }
    const std::string base = t.name.substr(0, t.name.size() - 7);
    LoraPair pair;
    if (!ParseBaseName(base, &pair.layer, &pair.module)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor ", t.name, " adapts ", base, ", which is not an adaptable matrix"));
    }
    const gguf::TensorInfo* tb = f->FindTensor(base + ".lora_b");
    if (tb == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", t.name, " has no matching ", base, ".lora_b"));
    }
    ANVIL_ASSIGN_OR_RETURN(pair.a, GgufFloats(*f, t));
    ANVIL_ASSIGN_OR_RETURN(pair.b, GgufFloats(*f, *tb));
    pair.rank = t.shape[1];
    pair.cols = t.shape[0];
    pair.rows = tb->shape[1];
    if (tb->shape[0] != pair.rank) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", tb->name, " has rank ",
                                                     tb->shape[0], " but ", t.name, " has ",
                                                     pair.rank));
    }
    const float scale = alpha != 0 ? alpha / static_cast<float>(pair.rank) : 1.0f;
    ANVIL_RETURN_IF_ERROR(AddPair(model, path, t.name, std::move(pair), scale, a));
  }
  return absl::OkStatus();
}

absl::Status LoadPeft(const LlamaModel& model, const std::string& dir,
                      const std::string& st_path, AdapterWeights* a) {
  const std::string cfg_path = (std::filesystem::path(dir) / "adapter_config.json").string();
  std::ifstream in(cfg_path);
  if (!in) return absl::NotFoundError(absl::StrCat(cfg_path, ": cannot read"));
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json cfg = nlohmann::json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (cfg.is_discarded() || !cfg.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(cfg_path, ": not a JSON object"));
  }
  if (!cfg.contains("r") || !cfg["r"].is_number_integer() || cfg["r"].get<int64_t>() <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(cfg_path, ": r must be a positive integer"));
  }
  if (!cfg.contains("lora_alpha") || !cfg["lora_alpha"].is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(cfg_path, ": lora_alpha must be a number"));
  }
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (cfg.contains(key) && !cfg[key].is_null() && !cfg[key].empty()) {
      return absl::UnimplementedError(absl::StrCat(cfg_path, ": ", key, " is not supported"));
    }
  }
  LoraConfig lc;
  lc.rank = cfg["r"].get<int64_t>();
  lc.alpha = cfg["lora_alpha"].get<float>();
  lc.rslora = cfg.value("use_rslora", false);
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<safetensors::SafetensorsFile> st,
                         safetensors::SafetensorsFile::Open(st_path));
  const LlamaConfig& c = model.config();
  int64_t found = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    for (LoraModule m : kAllLoraModules) {
      LoraPair pair;
      pair.layer = l;
      pair.module = m;
      const std::string an = train::PeftTensorName(pair, true);
      const std::string bn = train::PeftTensorName(pair, false);
      const safetensors::TensorView* ta = st->Find(an);
      const safetensors::TensorView* tb = st->Find(bn);
      if (ta == nullptr && tb == nullptr) continue;
      if (ta == nullptr || tb == nullptr || ta->shape.size() != 2 || tb->shape.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            st_path, ": ", an, " and ", bn, " must both be present and 2-D"));
      }
      pair.rank = ta->shape[0];
      pair.cols = ta->shape[1];
      pair.rows = tb->shape[0];
      if (tb->shape[1] != pair.rank) {
        return absl::InvalidArgumentError(
            absl::StrCat(st_path, ": ", bn, " has rank ", tb->shape[1], ", ", an, " has ",
                         pair.rank));
      }
      ANVIL_ASSIGN_OR_RETURN(pair.a, st->ReadF32(an));
      ANVIL_ASSIGN_OR_RETURN(pair.b, st->ReadF32(bn));
      // PEFT holds q/k rows in HF order; the base GGUF permutes them per head.
      const int64_t heads = m == LoraModule::kQ ? c.n_head : m == LoraModule::kK ? c.n_head_kv : 0;
      if (heads > 0) {
        if (pair.rows % heads != 0 || (pair.rows / heads) % 2 != 0) {
          return absl::InvalidArgumentError(absl::StrCat(st_path, ": ", bn, " has ", pair.rows,
                                                         " rows, not heads of even size"));
        }
        pair.b = train::HfToGgufRows(pair.b, pair.rows, pair.rank, heads);
      }
      LoraConfig pc = lc;
      pc.rank = pair.rank;
      ANVIL_RETURN_IF_ERROR(AddPair(model, st_path, an, std::move(pair), pc.scale(), a));
      ++found;
    }
  }
  if (found == 0 || found * 2 != static_cast<int64_t>(st->tensors().size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        st_path, ": ", st->tensors().size(), " tensors, of which ", found,
        " lora_A/lora_B pairs of base_model.model.model.layers.<l>.<module>"));
  }
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
  if (fs::is_directory(path, ec)) {
    ANVIL_RETURN_IF_ERROR(
        LoadPeft(model, path, (fs::path(path) / "adapter_model.safetensors").string(), a.get()));
  } else if (absl::EndsWith(path, ".safetensors")) {
    ANVIL_RETURN_IF_ERROR(LoadPeft(model, fs::path(path).parent_path().string(), path, a.get()));
  } else {
    ANVIL_RETURN_IF_ERROR(LoadGguf(model, path, a.get()));
  }
  if (a->matrices.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the adapter has no LoRA tensors"));
  }
  return a;
}

}  // namespace anvil::server
