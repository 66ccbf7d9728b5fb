// LoRA adapter readers: llama.cpp adapter GGUF and PEFT directory -> LoraAdapters.
#include "train/adapter_read.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kernels/core/status_macros.h"
#include "kernels/quantize.h"
#include "model/safetensors.h"
#include "nlohmann/json.hpp"
#include "train/checkpoint.h"
#include "train/export.h"

namespace anvil::train {
namespace {

using gguf::GgufFile;
using gguf::TensorInfo;

// "blk.<l>.<suffix>.weight" -> (layer, module); nullopt for any other name.
std::optional<std::pair<int64_t, LoraModule>> ParseBaseName(const std::string& name) {
  const std::vector<std::string> parts = absl::StrSplit(name, '.');
  if (parts.size() != 4 || parts[0] != "blk" || parts[3] != "weight") return std::nullopt;
  int64_t layer = 0;
  if (!absl::SimpleAtoi(parts[1], &layer) || layer < 0) return std::nullopt;
  for (LoraModule m : kAllLoraModules) {
    if (parts[2] == GgufSuffix(m)) return std::make_pair(layer, m);
  }
  return std::nullopt;
}

// Every element of a F32/F16/BF16 GGUF tensor as float.
absl::StatusOr<std::vector<float>> TensorFloats(const TensorInfo& t, const std::string& file) {
  const std::optional<DType> dt = gguf::ToDType(t.ggml_type);
  if (!dt || (*dt != DType::kF32 && *dt != DType::kF16 && *dt != DType::kBF16)) {
    const gguf::GgmlTypeInfo* info = gguf::FindGgmlType(t.ggml_type);
    return absl::UnimplementedError(absl::StrCat(file, ": tensor ", t.name, " has type ",
                                                 info != nullptr ? info->name : "?",
                                                 "; adapters must be F32, F16 or BF16"));
  }
  std::vector<float> out(static_cast<size_t>(t.num_elements()));
  DequantizeRow(*dt, t.data, out.data(), t.num_elements());
  return out;
}

// The base tensor must be 2-D with ne = [cols, rows].
absl::Status CheckAgainstBase(const LoraPair& p, const GgufFile& base, const std::string& file) {
  const TensorInfo* t = base.FindTensor(p.BaseName());
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": adapts ", p.BaseName(), ", which ", base.name(), " does not have"));
  }
  if (t->shape.size() != 2 || t->shape[0] != p.cols || t->shape[1] != p.rows) {
    return absl::InvalidArgumentError(
        absl::StrCat(file, ": adapter for ", p.BaseName(), " is [", p.rows, "][", p.cols, "] but ",
                     base.name(), " has ne = [", absl::StrJoin(t->shape, ", "), "]"));
  }
  return absl::OkStatus();
}

// Fills config.rank/targets from the pairs (sorted by layer, then module) and checks one rank.
absl::Status Finish(LoraAdapters& lora, const std::string& file) {
  if (lora.pairs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": no LoRA tensors"));
  }
  std::sort(lora.pairs.begin(), lora.pairs.end(), [](const LoraPair& a, const LoraPair& b) {
    return a.layer != b.layer ? a.layer < b.layer : a.module < b.module;
  });
  lora.config.rank = lora.pairs[0].rank;
  lora.config.targets.clear();
  for (const LoraPair& p : lora.pairs) {
    if (p.rank != lora.config.rank) {
      return absl::InvalidArgumentError(absl::StrCat(file, ": ", p.BaseName(), " has rank ", p.rank,
                                                     ", others ", lora.config.rank));
    }
    if (std::find(lora.config.targets.begin(), lora.config.targets.end(), p.module) ==
        lora.config.targets.end()) {
      lora.config.targets.push_back(p.module);
    }
  }
  std::sort(lora.config.targets.begin(), lora.config.targets.end());
  return absl::OkStatus();
}

absl::StatusOr<int64_t> HeadCount(const GgufFile& base, const char* suffix) {
  ANVIL_ASSIGN_OR_RETURN(const std::string arch, base.GetString("general.architecture"));
  return base.GetInt(absl::StrCat(arch, suffix));
}

}  // namespace

absl::StatusOr<LoraAdapters> ReadLoraGguf(const std::string& path, const GgufFile& base) {
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(path));
  auto type = f->GetString("general.type");
  auto adapter_type = f->GetString("adapter.type");
  if (!type.ok() || *type != "adapter" || !adapter_type.ok() || *adapter_type != "lora") {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a LoRA adapter (general.type must be \"adapter\" and adapter.type \"lora\")"));
  }
  ANVIL_ASSIGN_OR_RETURN(const std::string arch, f->GetString("general.architecture"));
  ANVIL_ASSIGN_OR_RETURN(const std::string base_arch, base.GetString("general.architecture"));
  if (arch != base_arch) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": adapter for architecture ", arch,
                                                   ", base ", base.name(), " is ", base_arch));
  }
  double alpha = 0.0;
  if (f->Has("adapter.lora.alpha")) {
    ANVIL_ASSIGN_OR_RETURN(alpha, f->GetFloat("adapter.lora.alpha"));
  }
  LoraAdapters lora;
  for (const TensorInfo& ta : f->tensors()) {
    if (absl::EndsWith(ta.name, ".lora_b")) continue;  // taken with its lora_a
    if (!absl::EndsWith(ta.name, ".lora_a")) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": tensor ", ta.name, " is neither .lora_a nor .lora_b"));
    }
    const std::string base_name = ta.name.substr(0, ta.name.size() - 7);
    const auto parsed = ParseBaseName(base_name);
    if (!parsed) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor ", ta.name, " adapts ",
                                                     base_name, ", not a llama linear weight"));
    }
    const TensorInfo* tb = f->FindTensor(base_name + ".lora_b");
    if (tb == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", ta.name, " has no .lora_b"));
    }
    if (ta.shape.size() != 2 || tb->shape.size() != 2 || ta.shape[1] != tb->shape[0]) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ", base_name, ": lora_a ne = [", absl::StrJoin(ta.shape, ", "),
                       "] and lora_b ne = [", absl::StrJoin(tb->shape, ", "), "] do not pair"));
    }
    LoraPair p;
    p.layer = parsed->first;
    p.module = parsed->second;
    p.cols = ta.shape[0];
    p.rank = ta.shape[1];
    p.rows = tb->shape[1];
    ANVIL_ASSIGN_OR_RETURN(p.a, TensorFloats(ta, path));   // [rank][cols]
    ANVIL_ASSIGN_OR_RETURN(p.b, TensorFloats(*tb, path));  // [rows][rank]
    ANVIL_RETURN_IF_ERROR(CheckAgainstBase(p, base, path));
    lora.pairs.push_back(std::move(p));
  }
  for (const TensorInfo& tb : f->tensors()) {
    if (absl::EndsWith(tb.name, ".lora_b") &&
        f->FindTensor(tb.name.substr(0, tb.name.size() - 7) + ".lora_a") == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", tb.name, " has no .lora_a"));
    }
  }
  ANVIL_RETURN_IF_ERROR(Finish(lora, path));
  // llama.cpp: scale = alpha ? alpha / r : 1 (llama_adapter_lora_weight::get_scale).
  lora.config.alpha =
      alpha != 0.0 ? static_cast<float>(alpha) : static_cast<float>(lora.config.rank);
  lora.config.rslora = false;
  return lora;
}

absl::StatusOr<LoraAdapters> ReadPeftAdapter(const std::string& dir, const GgufFile& base) {
  using Json = nlohmann::json;
  const std::string config_path = dir + "/adapter_config.json";
  std::ifstream in(config_path);
  if (!in) return absl::NotFoundError(absl::StrCat(config_path, ": cannot open"));
  std::stringstream ss;
  ss << in.rdbuf();
  const Json j = Json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": not a JSON object"));
  }
  if (j.value("peft_type", std::string("LORA")) != "LORA") {
    return absl::UnimplementedError(absl::StrCat(config_path, ": peft_type is not LORA"));
  }
  if (j.value("use_dora", false)) {
    return absl::UnimplementedError(absl::StrCat(config_path, ": DoRA adapters are not merged"));
  }
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (j.contains(key) && j[key].is_object() && !j[key].empty()) {
      return absl::UnimplementedError(absl::StrCat(config_path, ": ", key, " is not supported"));
    }
  }
  if (j.contains("bias") && j["bias"].is_string() && j["bias"] != "none") {
    return absl::UnimplementedError(absl::StrCat(config_path, ": bias must be \"none\""));
  }
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"].get<int64_t>() < 1 ||
      !j.contains("lora_alpha") || !j["lora_alpha"].is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": needs an integer r >= 1 and a numeric lora_alpha"));
  }
  const int64_t rank = j["r"].get<int64_t>();
  ANVIL_ASSIGN_OR_RETURN(const int64_t n_head, HeadCount(base, ".attention.head_count"));
  ANVIL_ASSIGN_OR_RETURN(const int64_t n_head_kv, HeadCount(base, ".attention.head_count_kv"));

  const std::string st_path = dir + "/adapter_model.safetensors";
  ANVIL_ASSIGN_OR_RETURN(auto st, safetensors::SafetensorsFile::Open(st_path));
  LoraAdapters lora;
  const std::string kPrefix = "base_model.model.model.layers.";
  const std::string kA = ".lora_A.weight";
  for (const safetensors::TensorView& ta : st->tensors()) {
    if (absl::EndsWith(ta.name, ".lora_B.weight")) continue;
    if (!absl::StartsWith(ta.name, kPrefix) || !absl::EndsWith(ta.name, kA)) {
      return absl::InvalidArgumentError(
          absl::StrCat(st_path, ": tensor ", ta.name, " is not a llama LoRA A/B matrix"));
    }
    // "<l>.<PeftPath>" between the prefix and ".lora_A.weight".
    const std::string mid(
        ta.name.substr(kPrefix.size(), ta.name.size() - kPrefix.size() - kA.size()));
    const size_t dot = mid.find('.');
    int64_t layer = -1;
    std::optional<LoraModule> module;
    if (dot != std::string::npos && absl::SimpleAtoi(mid.substr(0, dot), &layer)) {
      for (LoraModule m : kAllLoraModules) {
        if (mid.substr(dot + 1) == PeftPath(m)) module = m;
      }
    }
    if (!module || layer < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(st_path, ": tensor ", ta.name, " names no llama linear module"));
    }
    const std::string b_name = ta.name.substr(0, ta.name.size() - kA.size()) + ".lora_B.weight";
    const safetensors::TensorView* tb = st->Find(b_name);
    if (tb == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(st_path, ": ", ta.name, " has no lora_B"));
    }
    if (ta.shape.size() != 2 || tb->shape.size() != 2 || ta.shape[0] != rank ||
        tb->shape[1] != rank) {
      return absl::InvalidArgumentError(
          absl::StrCat(st_path, ": ", ta.name, " [", absl::StrJoin(ta.shape, ", "), "] / lora_B [",
                       absl::StrJoin(tb->shape, ", "), "] do not match r = ", rank));
    }
    LoraPair p;
    p.layer = layer;
    p.module = *module;
    p.rank = rank;
    p.cols = ta.shape[1];
    p.rows = tb->shape[0];
    ANVIL_ASSIGN_OR_RETURN(p.a, st->ReadF32(ta.name));  // [rank][cols]
    ANVIL_ASSIGN_OR_RETURN(p.b, st->ReadF32(b_name));   // [rows][rank], HF row order
    if (p.module == LoraModule::kQ || p.module == LoraModule::kK) {
      const int64_t heads = p.module == LoraModule::kQ ? n_head : n_head_kv;
      if (heads < 1 || p.rows % heads != 0 || (p.rows / heads) % 2 != 0) {
        return absl::InvalidArgumentError(absl::StrCat(st_path, ": ", b_name, ": ", p.rows,
                                                       " rows do not split into ", heads,
                                                       " heads of even size"));
      }
      p.b = HfToGgufRows(p.b, p.rows, p.rank, heads);
    }
    ANVIL_RETURN_IF_ERROR(CheckAgainstBase(p, base, st_path));
    lora.pairs.push_back(std::move(p));
  }
  for (const safetensors::TensorView& tb : st->tensors()) {
    if (absl::EndsWith(tb.name, ".lora_B.weight") &&
        st->Find(tb.name.substr(0, tb.name.size() - 14) + kA) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(st_path, ": ", tb.name, " has no lora_A"));
    }
  }
  ANVIL_RETURN_IF_ERROR(Finish(lora, st_path));
  lora.config.alpha = j["lora_alpha"].get<float>();
  lora.config.rslora = j.value("use_rslora", false);
  return lora;
}

absl::StatusOr<LoraAdapters> ReadCheckpointAdapter(const std::string& path, const GgufFile& base) {
  ANVIL_ASSIGN_OR_RETURN(Checkpoint ckpt, ReadCheckpoint(path));
  auto meta = [&](const char* key) -> std::string {
    auto it = ckpt.metadata.find(key);
    return it == ckpt.metadata.end() ? std::string() : it->second;
  };
  const std::string method = meta("train.method");
  if (method != "lora" && method != "qlora") {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": a checkpoint of ", method.empty() ? "an unknown method" : method,
        " training holds no LoRA adapters"));
  }
  LoraAdapters lora;
  int64_t rank = 0;
  const std::string rslora = meta("lora.rslora");
  if (!absl::SimpleAtoi(meta("lora.rank"), &rank) ||
      !absl::SimpleAtof(meta("lora.alpha"), &lora.config.alpha) ||
      (rslora != "true" && rslora != "false")) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": checkpoint metadata lora.rank, lora.alpha or lora.rslora is missing "
                           "or malformed (checkpoints of anvil before 2026-11-27 lack them)"));
  }
  const std::string prefix = kCheckpointParamPrefix;
  for (CheckpointTensor& ta : ckpt.tensors) {
    if (!absl::StartsWith(ta.name, prefix) || !absl::EndsWith(ta.name, ".lora_a")) continue;
    const std::string base_name = ta.name.substr(prefix.size(), ta.name.size() - prefix.size() - 7);
    const auto parsed = ParseBaseName(base_name);
    const CheckpointTensor* tb = ckpt.Find(prefix + base_name + ".lora_b");
    if (!parsed || tb == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": tensor ", ta.name, !parsed ? " does not adapt a llama linear weight"
                                              : " has no .lora_b"));
    }
    if (ta.shape.size() != 2 || tb->shape.size() != 2 || ta.shape[0] != tb->shape[1] ||
        ta.shape[0] != rank) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": ", base_name, ": lora_a [", absl::StrJoin(ta.shape, "]["), "] and lora_b [",
          absl::StrJoin(tb->shape, "]["), "] do not pair at lora.rank ", rank));
    }
    LoraPair p;
    p.layer = parsed->first;
    p.module = parsed->second;
    p.rank = rank;
    p.cols = ta.shape[1];
    p.rows = tb->shape[0];
    p.a = std::move(ta.data);  // [rank][cols]
    p.b = tb->data;            // [rows][rank]
    ANVIL_RETURN_IF_ERROR(CheckAgainstBase(p, base, path));
    lora.pairs.push_back(std::move(p));
  }
  ANVIL_RETURN_IF_ERROR(Finish(lora, path));
  lora.config.rslora = rslora == "true";
  return lora;
}

absl::StatusOr<LoraAdapters> ReadAdapter(const std::string& path, const GgufFile& base) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(st)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  if (std::filesystem::is_directory(st)) return ReadPeftAdapter(path, base);
  if (absl::EndsWith(path, ".safetensors")) return ReadCheckpointAdapter(path, base);
  return ReadLoraGguf(path, base);
}

}  // namespace anvil::train
