#include "rpc/job_spec.h"

#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"

namespace anvil::rpc {
namespace {

// A plain YAML scalar as JSON: booleans, integers and floats as such, everything else a string.
nlohmann::json ScalarToJson(const YAML::Node& n) {
  const std::string& s = n.Scalar();
  if (n.Tag() != "?") return s;  // quoted: always a string
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  errno = 0;
  char* end = nullptr;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (errno == 0 && end == s.c_str() + s.size()) return i;
  errno = 0;
  const double d = std::strtod(s.c_str(), &end);
  if (errno == 0 && end == s.c_str() + s.size()) return d;
  return s;
}

nlohmann::json YamlToJson(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::json obj = nlohmann::json::object();
      for (const auto& kv : n) obj[kv.first.Scalar()] = YamlToJson(kv.second);
      return obj;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::json arr = nlohmann::json::array();
      for (const auto& item : n) arr.push_back(YamlToJson(item));
      return arr;
    }
    case YAML::NodeType::Scalar:
      return ScalarToJson(n);
    default:
      return nullptr;
  }
}

std::string Absolute(const std::string& p, std::string_view base_dir) {
  if (p.empty()) return p;
  if (p == "~" || absl::StartsWith(p, "~/")) {
    const char* home = std::getenv("HOME");
    return absl::StrCat(home != nullptr ? home : "", p.substr(1));
  }
  std::filesystem::path path(p);
  if (!path.is_absolute()) {
    std::filesystem::path base = base_dir.empty() ? std::filesystem::current_path()
                                                  : std::filesystem::path(std::string(base_dir));
    path = std::filesystem::absolute(base / path);
  }
  return path.lexically_normal().string();
}

}  // namespace

absl::StatusOr<v1::FinetuneSpec> FinetuneSpecFromYaml(std::string_view yaml, std::string_view name,
                                                      std::string_view base_dir) {
  // The recipe parser's checks and messages (file:line:col: field: ...) come first.
  if (absl::StatusOr<train::Recipe> r = train::ParseRecipe(yaml, name, base_dir); !r.ok()) {
    return r.status();
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": ", e.what()));
  }
  const std::string json = YamlToJson(root).dump();
  v1::FinetuneSpec spec;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  if (auto s = google::protobuf::util::JsonStringToMessage(json, &spec, options); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(name), ": does not map onto anvil.v1.FinetuneSpec: ", s.message().as_string()));
  }
  spec.set_model(Absolute(spec.model(), base_dir));
  auto* data = spec.mutable_data();
  if (data->has_train()) data->set_train(Absolute(data->train(), base_dir));
  if (data->has_eval()) data->set_eval(Absolute(data->eval(), base_dir));
  if (spec.checkpoint().has_dir()) {
    spec.mutable_checkpoint()->set_dir(Absolute(spec.checkpoint().dir(), base_dir));
  }
  if (spec.output().has_dir()) spec.mutable_output()->set_dir(Absolute(spec.output().dir(), base_dir));
  if (spec.log().has_metrics()) spec.mutable_log()->set_metrics(Absolute(spec.log().metrics(), base_dir));
  return spec;
}

absl::StatusOr<v1::FinetuneSpec> LoadFinetuneSpec(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": no such recipe file"));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::filesystem::path p = std::filesystem::absolute(path);
  return FinetuneSpecFromYaml(ss.str(), path, p.parent_path().string());
}

std::string FinetuneSpecToJson(const v1::FinetuneSpec& spec) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(spec, &out, options);
  return out;
}

absl::StatusOr<train::Recipe> RecipeFromSpec(const v1::FinetuneSpec& spec,
                                             std::string_view field_prefix) {
  const std::string json = FinetuneSpecToJson(spec);
  absl::StatusOr<train::Recipe> r = train::ParseRecipe(json, field_prefix, "");
  if (r.ok()) return r;
  // The parser says "<prefix>:<line>:<col>: lora.rank: ..." about the JSON text; a spec's
  // reader wants the field path: "<prefix>.lora.rank: ...".
  const std::string prefix = absl::StrCat(std::string(field_prefix), ":");
  std::string out;
  for (absl::string_view line : absl::StrSplit(r.status().message(), '\n')) {
    if (!out.empty()) out += "\n";
    if (absl::ConsumePrefix(&line, prefix)) {
      // Skip "<line>:<col>: ".
      for (int colons = 0; colons < 2 && !line.empty(); line.remove_prefix(1)) {
        if (line.front() == ':') ++colons;
      }
      absl::ConsumePrefix(&line, " ");
      absl::StrAppend(&out, std::string(field_prefix), line.empty() ? "" : ".", line);
    } else {
      absl::StrAppend(&out, line);
    }
  }
  return absl::Status(r.status().code(), out);
}

absl::Status ValidateEvalSpec(const v1::EvalSpec& spec) {
  const std::pair<const char*, const std::string*> required[] = {
      {"model", &spec.model()}, {"task", &spec.task()}, {"output", &spec.output()}};
  for (const auto& [name, value] : required) {
    if (value->empty()) {
      return absl::InvalidArgumentError(absl::StrCat("spec.eval.", name, ": required"));
    }
    if (value->size() > 4096) {
      return absl::InvalidArgumentError(absl::StrCat("spec.eval.", name, ": longer than 4096"));
    }
  }
  if (spec.limit() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.eval.limit: must be >= 0, got ", spec.limit()));
  }
  if (spec.has_threads() && (spec.threads() < 1 || spec.threads() > 256)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.eval.threads: must be in [1, 256], got ", spec.threads()));
  }
  if (spec.has_strategy() && spec.strategy() != "zero_shot" && spec.strategy() != "few_shot" &&
      spec.strategy() != "chain_of_thought") {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.eval.strategy: expected zero_shot, few_shot or chain_of_thought, got \"",
        spec.strategy(), "\""));
  }
  return absl::OkStatus();
}

namespace {

absl::Status RequirePath(const char* field, const std::string& value) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (value.size() > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": longer than 4096 bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckRange(const char* field, bool has, int64_t v, int64_t lo, int64_t hi) {
  if (has && (v < lo || v > hi)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be in [", lo, ", ", hi, "], got ", v));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateQuantizeSpec(const v1::QuantizeSpec& spec) {
  ANVIL_RETURN_IF_ERROR(RequirePath("spec.quantize.input", spec.input()));
  ANVIL_RETURN_IF_ERROR(RequirePath("spec.quantize.output", spec.output()));
  if (spec.type() != "q8_0" && spec.type() != "q4_0" && spec.type() != "q4_1") {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.quantize.type: expected q8_0, q4_0 or q4_1, got \"", spec.type(), "\""));
  }
  return absl::OkStatus();
}

absl::Status ValidateDeploySpec(const v1::DeploySpec& spec) {
  ANVIL_RETURN_IF_ERROR(RequirePath("spec.deploy.model", spec.model()));
  ANVIL_RETURN_IF_ERROR(CheckRange("spec.deploy.grpc_port", spec.has_grpc_port(),
                                   spec.grpc_port(), 0, 65535));
  ANVIL_RETURN_IF_ERROR(CheckRange("spec.deploy.http_port", spec.has_http_port(),
                                   spec.http_port(), 0, 65535));
  ANVIL_RETURN_IF_ERROR(CheckRange("spec.deploy.threads", spec.has_threads(), spec.threads(), 1,
                                   256));
  ANVIL_RETURN_IF_ERROR(CheckRange("spec.deploy.max_running", spec.has_max_running(),
                                   spec.max_running(), 1, 1024));
  ANVIL_RETURN_IF_ERROR(CheckRange("spec.deploy.max_queue", spec.has_max_queue(),
                                   spec.max_queue(), 0, 100000));
  if (spec.has_token_file()) {
    ANVIL_RETURN_IF_ERROR(RequirePath("spec.deploy.token_file", spec.token_file()));
  }
  if (spec.has_matmul() && spec.matmul() != "exact" && spec.matmul() != "fast") {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.deploy.matmul: expected exact or fast, got \"", absl::CEscape(spec.matmul()), "\""));
  }
  if (spec.has_kv_type() && spec.kv_type() != "f32" && spec.kv_type() != "f16") {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.deploy.kv_type: expected f32 or f16, got \"", absl::CEscape(spec.kv_type()), "\""));
  }
  if (spec.host().size() > 255) {
    return absl::InvalidArgumentError("spec.deploy.host: longer than 255 bytes");
  }
  for (const auto& [name, path] : spec.adapters()) {
    if (name.empty() || name.size() > 128 || name.find_first_of("+= \t\n") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec.deploy.adapters: name \"", name, "\" must be 1..128 bytes without '+', '=' or "
          "spaces"));
    }
    ANVIL_RETURN_IF_ERROR(RequirePath("spec.deploy.adapters[].path", path));
  }
  return absl::OkStatus();
}

absl::Status ValidateJobSpec(const v1::JobSpec& spec) {
  const int min = spec.min_workers() == 0 ? 1 : spec.min_workers();
  const int max = spec.max_workers() == 0 ? min : spec.max_workers();
  if (min < 1 || min > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.min_workers: must be in [1, 64], got ", spec.min_workers()));
  }
  if (max < min || max > 64) {
    return absl::InvalidArgumentError(absl::StrCat("spec.max_workers: must be in [min_workers=",
                                                   min, ", 64], got ", spec.max_workers()));
  }
  if (spec.has_max_retries() && (spec.max_retries() < 0 || spec.max_retries() > 100)) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec.max_retries: must be in [0, 100], got ", spec.max_retries()));
  }
  if (spec.name().size() > 256) {
    return absl::InvalidArgumentError("spec.name: longer than 256 bytes");
  }
  switch (spec.task_case()) {
    case v1::JobSpec::kFinetune:
      return RecipeFromSpec(spec.finetune()).status();
    case v1::JobSpec::kEval:
      return ValidateEvalSpec(spec.eval());
    case v1::JobSpec::kQuantize:
      return ValidateQuantizeSpec(spec.quantize());
    case v1::JobSpec::kDeploy:
      if (min != 1 || max != 1) {
        return absl::InvalidArgumentError("spec.min_workers: a deployment runs on one worker");
      }
      return ValidateDeploySpec(spec.deploy());
    case v1::JobSpec::TASK_NOT_SET:
      return absl::InvalidArgumentError(
          "spec.task: no task set (finetune, eval, quantize or deploy)");
  }
  return absl::InvalidArgumentError("spec.task: unknown task");
}

}  // namespace anvil::rpc
