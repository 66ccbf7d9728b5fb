// PEFT directory, llama.cpp LoRA GGUF and merged GGUF exports: pair validation, the Q/K row
// (un)permutation, dequantize-merge-convert of every base tensor.
#include "train/export.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/half.h"
#include "kernels/core/status_macros.h"
#include "kernels/quantize.h"
#include "model/file_io.h"
#include "model/gguf_writer.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"

namespace anvil::train {
namespace {

using gguf::GgufWriter;
using gguf::TensorInfo;
using gguf::Value;

constexpr uint32_t kGgmlF32 = 0;
constexpr uint32_t kGgmlF16 = 1;

// Moves row `src` of an [rows][cols] matrix to row `dst` for every row, per the mapping.
template <typename DstOfSrc>
std::vector<float> PermuteRows(absl::Span<const float> m, int64_t rows, int64_t cols,
                               DstOfSrc dst_of_src) {
  std::vector<float> out(m.size());
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(out.data() + dst_of_src(r) * cols, m.data() + r * cols, cols * sizeof(float));
  }
  return out;
}

// A float as JSON would print its shortest decimal form (0.05f -> 0.05, not 0.0500000007).
double ShortestDouble(float f) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof(buf), f);
  return std::stod(std::string(buf, res.ptr));
}

std::string FloatBytes(absl::Span<const float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::string PairLabel(const LoraPair& p) { return absl::StrCat("LoRA pair ", p.BaseName()); }

// Sizes consistent, rank as configured, module targeted, no duplicates.
absl::Status ValidatePairs(const LoraAdapters& lora) {
  const LoraConfig& c = lora.config;
  if (c.rank < 1) return absl::InvalidArgumentError(absl::StrCat("LoRA rank ", c.rank, " < 1"));
  absl::flat_hash_set<std::string> seen;
  for (const LoraPair& p : lora.pairs) {
    const std::string label = PairLabel(p);
    if (p.rank != c.rank) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": rank ", p.rank, " but the config says ", c.rank));
    }
    if (p.rows < 1 || p.cols < 1 || p.layer < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": bad shape ", p.rows, " x ", p.cols, " (layer ", p.layer, ")"));
    }
    if (p.a.size() != static_cast<size_t>(p.rank * p.cols) ||
        p.b.size() != static_cast<size_t>(p.rows * p.rank)) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": A has ", p.a.size(), " floats (needs ", p.rank * p.cols,
                       "), B has ", p.b.size(), " (needs ", p.rows * p.rank, ")"));
    }
    bool targeted = false;
    for (LoraModule m : c.targets) targeted = targeted || m == p.module;
    if (!targeted) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": module ", LoraModuleName(p.module),
                                                     " is not in the config's targets"));
    }
    if (!seen.insert(p.BaseName()).second) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": duplicate pair"));
    }
  }
  return absl::OkStatus();
}

// The base tensor a pair adapts: present, 2-D, ne = [cols, rows].
absl::StatusOr<const TensorInfo*> BaseTensorFor(const LoraPair& p, const gguf::GgufFile& base) {
  const TensorInfo* t = base.FindTensor(p.BaseName());
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(PairLabel(p), ": ", base.name(), " has no tensor ", p.BaseName()));
  }
  if (t->shape.size() != 2 || t->shape[0] != p.cols || t->shape[1] != p.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(PairLabel(p), ": adapts a [", p.rows, "][", p.cols, "] matrix but ",
                     base.name(), " has ne = [", absl::StrJoin(t->shape, ", "), "]"));
  }
  return t;
}

absl::Status CreateDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": cannot create the directory: ", ec.message()));
  }
  return absl::OkStatus();
}

// Every element of `t` as float, row by row.
absl::StatusOr<std::vector<float>> Dequantize(const TensorInfo& t, const std::string& file) {
  const std::optional<DType> dt = gguf::ToDType(t.ggml_type);
  if (!dt) {
    const gguf::GgmlTypeInfo* info = gguf::FindGgmlType(t.ggml_type);
    return absl::UnimplementedError(absl::StrCat(file, ": tensor ", t.name, " has type ",
                                                 info != nullptr ? info->name : "?",
                                                 ", which the merge cannot dequantize"));
  }
  const int64_t ne0 = t.shape[0];
  const int64_t n_rows = t.num_elements() / ne0;
  ANVIL_ASSIGN_OR_RETURN(const int64_t row_bytes, RowBytes(*dt, ne0));
  std::vector<float> out(static_cast<size_t>(t.num_elements()));
  for (int64_t r = 0; r < n_rows; ++r) {
    DequantizeRow(*dt, t.data + r * row_bytes, out.data() + r * ne0, ne0);
  }
  return out;
}

// w[i][j] += scale * sum_k b[i][k] a[k][j]: the delta summed in float over k, then scaled.
void AddLoraDelta(const LoraPair& p, float scale, float* w /* [rows][cols] */) {
  std::vector<float> delta(p.cols);
  for (int64_t i = 0; i < p.rows; ++i) {
    std::fill(delta.begin(), delta.end(), 0.0f);
    for (int64_t k = 0; k < p.rank; ++k) {
      const float bik = p.b[i * p.rank + k];
      const float* a_row = p.a.data() + k * p.cols;
      for (int64_t j = 0; j < p.cols; ++j) delta[j] += bik * a_row[j];
    }
    float* w_row = w + i * p.cols;
    // A zero delta leaves w bitwise unchanged (w + 0 would turn -0 into +0).
    for (int64_t j = 0; j < p.cols; ++j) {
      if (delta[j] != 0.0f) w_row[j] += scale * delta[j];
    }
  }
}

}  // namespace

std::vector<float> GgufToHfRows(absl::Span<const float> m, int64_t rows, int64_t cols,
                                int64_t n_heads) {
  const int64_t d = rows / n_heads;
  return PermuteRows(m, rows, cols, [d](int64_t g) {
    const int64_t h = g / d, i = (g % d) / 2, j = g % 2;  // GGUF row h*d + 2i + j
    return h * d + j * (d / 2) + i;
  });
}

std::vector<float> HfToGgufRows(absl::Span<const float> m, int64_t rows, int64_t cols,
                                int64_t n_heads) {
  const int64_t d = rows / n_heads;
  return PermuteRows(m, rows, cols, [d](int64_t r) {
    const int64_t h = r / d, j = (r % d) / (d / 2), i = r % (d / 2);  // HF row h*d + j*d/2 + i
    return h * d + 2 * i + j;
  });
}

std::string PeftTensorName(const LoraPair& pair, bool a) {
  return absl::StrCat("base_model.model.model.layers.", pair.layer, ".", PeftPath(pair.module),
                      a ? ".lora_A.weight" : ".lora_B.weight");
}

std::string PeftAdapterConfigJson(const LoraConfig& config, const std::string& base_model_name) {
  using Json = nlohmann::json;  // std::map objects: keys come out sorted, as PEFT writes them
  Json j = Json::object();
  std::vector<std::string> targets;
  for (LoraModule m : config.targets) {
    const std::string path = PeftPath(m);
    targets.push_back(path.substr(path.find('.') + 1));  // "self_attn.q_proj" -> "q_proj"
  }
  j["alpha_pattern"] = Json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = base_model_name;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["loftq_config"] = Json::object();
  if (config.alpha == std::floor(config.alpha) && std::fabs(config.alpha) < 1e9f) {
    j["lora_alpha"] = static_cast<int64_t>(config.alpha);  // PEFT's type: int
  } else {
    j["lora_alpha"] = ShortestDouble(config.alpha);
  }
  j["lora_dropout"] = ShortestDouble(config.dropout);
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = config.rank;
  j["rank_pattern"] = Json::object();
  j["revision"] = nullptr;
  j["target_modules"] = targets;
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = config.rslora;
  return j.dump(2, ' ', false, Json::error_handler_t::replace);
}

absl::Status WritePeftAdapter(const LoraAdapters& lora, const std::string& dir,
                              const std::string& base_model_name, int64_t n_head,
                              int64_t n_head_kv) {
  ANVIL_RETURN_IF_ERROR(ValidatePairs(lora));
  if (n_head < 1 || n_head_kv < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("WritePeftAdapter: n_head ", n_head, ", n_head_kv ", n_head_kv));
  }
  safetensors::SafetensorsWriter writer;
  ANVIL_RETURN_IF_ERROR(writer.SetMetadata("format", "pt"));  // what PEFT's save writes
  for (const LoraPair& p : lora.pairs) {
    std::string b_bytes;
    if (p.module == LoraModule::kQ || p.module == LoraModule::kK) {
      const int64_t heads = p.module == LoraModule::kQ ? n_head : n_head_kv;
      if (p.rows % heads != 0 || (p.rows / heads) % 2 != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(PairLabel(p), ": ", p.rows, " rows do not split into ", heads,
                         " heads of even size, so the Q/K row order cannot be undone"));
      }
      b_bytes = FloatBytes(GgufToHfRows(p.b, p.rows, p.rank, heads));
    } else {
      b_bytes = FloatBytes(p.b);
    }
    ANVIL_RETURN_IF_ERROR(writer.Add(PeftTensorName(p, true), safetensors::ElementType::kF32,
                                     {p.rank, p.cols}, FloatBytes(p.a)));
    ANVIL_RETURN_IF_ERROR(writer.Add(PeftTensorName(p, false), safetensors::ElementType::kF32,
                                     {p.rows, p.rank}, std::move(b_bytes)));
  }
  ANVIL_RETURN_IF_ERROR(CreateDir(dir));
  ANVIL_RETURN_IF_ERROR(writer.WriteFile(dir + "/adapter_model.safetensors"));
  return WriteFileAtomically(
      dir + "/adapter_config.json", PeftAdapterConfigJson(lora.config, base_model_name) + "\n");
}

absl::Status WriteLoraGguf(const LoraAdapters& lora, const gguf::GgufFile& base,
                           const std::string& path) {
  ANVIL_RETURN_IF_ERROR(ValidatePairs(lora));
  ANVIL_ASSIGN_OR_RETURN(const std::string arch, base.GetString("general.architecture"));
  const LoraConfig& c = lora.config;
  // llama.cpp scales by alpha / r; under rslora we scale by alpha / sqrt(r).
  const float alpha = c.rslora ? c.alpha * std::sqrt(static_cast<float>(c.rank)) : c.alpha;
  GgufWriter w;
  w.Set("general.architecture", Value::String(arch));
  w.Set("general.type", Value::String("adapter"));
  if (const gguf::Value* name = base.Find("general.name");
      name != nullptr && name->type == gguf::ValueType::kString) {
    w.Set("general.name", Value::String(std::get<std::string>(name->data) + " LoRA"));
  }
  w.Set("adapter.type", Value::String("lora"));
  w.Set("adapter.lora.alpha", Value::Float32(alpha));
  for (const LoraPair& p : lora.pairs) {
    ANVIL_RETURN_IF_ERROR(BaseTensorFor(p, base).status());
    ANVIL_RETURN_IF_ERROR(
        w.AddTensor(p.BaseName() + ".lora_a", {p.cols, p.rank}, kGgmlF32, FloatBytes(p.a)));
    ANVIL_RETURN_IF_ERROR(
        w.AddTensor(p.BaseName() + ".lora_b", {p.rank, p.rows}, kGgmlF32, FloatBytes(p.b)));
  }
  return w.WriteFile(path);
}

absl::Status WriteMergedGguf(
    const gguf::GgufFile& base, const LoraAdapters* lora,
    const absl::flat_hash_map<std::string, const std::vector<float>*>& replaced, DType out,
    const std::string& path) {
  if (out != DType::kF32 && out != DType::kF16) {
    return absl::InvalidArgumentError(absl::StrCat("WriteMergedGguf: output type ", DTypeName(out),
                                                   "; only F32 and F16 are written"));
  }
  absl::flat_hash_map<std::string, const LoraPair*> pair_of;
  if (lora != nullptr) {
    ANVIL_RETURN_IF_ERROR(ValidatePairs(*lora));
    for (const LoraPair& p : lora->pairs) {
      ANVIL_RETURN_IF_ERROR(BaseTensorFor(p, base).status());
      pair_of.emplace(p.BaseName(), &p);
    }
  }
  for (const auto& [name, values] : replaced) {
    const TensorInfo* t = base.FindTensor(name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("WriteMergedGguf: replaced tensor ", name, " is not in ", base.name()));
    }
    if (values == nullptr || values->size() != static_cast<size_t>(t->num_elements())) {
      return absl::InvalidArgumentError(
          absl::StrCat("WriteMergedGguf: replaced tensor ", name, " has ",
                       values == nullptr ? 0 : values->size(), " floats but ne = [",
                       absl::StrJoin(t->shape, ", "), "] has ", t->num_elements()));
    }
  }

  GgufWriter w;
  const uint32_t file_type = out == DType::kF16 ? 1 : 0;  // LLAMA_FTYPE_MOSTLY_F16 / ALL_F32
  for (const auto& [key, value] : base.metadata()) {
    w.Set(key, key == "general.file_type" ? Value::Uint32(file_type) : value);
  }
  w.Set("general.file_type", Value::Uint32(file_type));  // added when the base lacks it

  for (const TensorInfo& t : base.tensors()) {
    std::vector<float> values;
    if (auto it = replaced.find(t.name); it != replaced.end()) {
      values = *it->second;
    } else {
      ANVIL_ASSIGN_OR_RETURN(values, Dequantize(t, base.name()));
    }
    if (auto it = pair_of.find(t.name); it != pair_of.end()) {
      AddLoraDelta(*it->second, lora->config.scale(), values.data());
    }
    std::string bytes;
    uint32_t type = kGgmlF32;
    if (t.shape.size() >= 2 && out == DType::kF16) {
      type = kGgmlF16;
      bytes.resize(values.size() * sizeof(uint16_t));
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = FloatToHalf(values[i]);
        std::memcpy(bytes.data() + 2 * i, &h, sizeof(h));
      }
    } else {
      bytes = FloatBytes(values);
    }
    ANVIL_RETURN_IF_ERROR(w.AddTensor(t.name, t.shape, type, std::move(bytes)));
  }
  return w.WriteFile(path);
}

}  // namespace anvil::train
