// What makes a fine-tuning run resumable: checkpoints (every trainable parameter, both AdamW
// moments, the optimizer step and the data order's position — LoRA dropout masks are a hash of
// the step, so no RNG state is needed), restoring the newest verified one, and the metrics
// file, which a resumed run cuts back to the checkpoint's step so it matches an uninterrupted run.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/core/status_macros.h"
#include "nlohmann/json.hpp"
#include "train/checkpoint.h"
#include "train/finetune_run.h"

namespace anvil::train {
namespace {

constexpr const char* kParam = kCheckpointParamPrefix;
constexpr char kMoment1[] = "adam_m/";
constexpr char kMoment2[] = "adam_v/";

std::string MetricsPath(const Recipe& r) {
  return r.log.metrics.empty() ? r.output.dir + "/metrics.jsonl" : r.log.metrics;
}

absl::StatusOr<int64_t> MetaInt(const Checkpoint& c, const std::string& path, const char* key) {
  auto it = c.metadata.find(key);
  int64_t v = 0;
  if (it == c.metadata.end() || !absl::SimpleAtoi(it->second, &v)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": checkpoint metadata ", key, " is missing or not an integer"));
  }
  return v;
}

}  // namespace

FinetuneRun::~FinetuneRun() {
  if (metrics_fd_ >= 0) ::close(metrics_fd_);
}

std::string FinetuneRun::CheckpointDir() const {
  return recipe_.checkpoint.dir.empty() ? recipe_.output.dir + "/checkpoints" : recipe_.checkpoint.dir;
}

absl::Status FinetuneRun::SaveCheckpoint(int64_t step) {
  std::vector<CheckpointTensorRef> refs;
  const std::vector<TrainParam>& params = model_->params();
  for (const TrainParam& p : params) refs.push_back({kParam + p.name, p.shape, p.value});
  for (size_t i = 0; i < params.size(); ++i) {
    refs.push_back({kMoment1 + params[i].name, params[i].shape, optimizer_->m()[i]});
    refs.push_back({kMoment2 + params[i].name, params[i].shape, optimizer_->v()[i]});
  }
  const DataPosition pos = order_->position();
  std::map<std::string, std::string> meta = {
      {"train.method", TrainMethodName(recipe_.method)},
      {"train.loss", LossKindName(recipe_.loss)},
      {"data.examples", absl::StrCat(order_->num_examples())},
      {"data.epoch", absl::StrCat(pos.epoch)},
      {"data.index", absl::StrCat(pos.index)},
      {"adam.step", absl::StrCat(optimizer_->step())},
      {"model", recipe_.model},
  };
  if (recipe_.method != TrainMethod::kFull) {  // what `anvil merge` needs to use the checkpoint
    meta["lora.rank"] = absl::StrCat(recipe_.lora.rank);
    meta["lora.alpha"] = absl::StrFormat("%.9g", recipe_.lora.alpha);  // round-trips a float
    meta["lora.rslora"] = recipe_.lora.rslora ? "true" : "false";
  }
  const std::string dir = CheckpointDir();
  ANVIL_RETURN_IF_ERROR(WriteCheckpoint(dir, step, refs, meta).status());
  if (recipe_.checkpoint.keep > 0) {
    ANVIL_RETURN_IF_ERROR(PruneCheckpoints(dir, static_cast<int>(recipe_.checkpoint.keep)).status());
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> FinetuneRun::Resume() {
  const std::string dir = CheckpointDir();
  if (!std::filesystem::exists(dir)) return 0;
  absl::StatusOr<LatestCheckpointResult> latest = LatestCheckpoint(dir);
  if (!latest.ok()) {
    if (latest.status().code() != absl::StatusCode::kNotFound) return latest.status();
    if (options_.progress && leader()) {
      std::fprintf(stderr, "anvil finetune: starting fresh: %s\n",
                   std::string(latest.status().message()).c_str());
    }
    return 0;
  }
  if (!latest->warning.empty() && options_.progress && leader()) {
    std::fprintf(stderr, "anvil finetune: warning: %s\n", latest->warning.c_str());
  }
  const std::string& path = latest->path;
  ANVIL_ASSIGN_OR_RETURN(Checkpoint ckpt, ReadCheckpoint(path));
  auto mismatch = [&](const std::string& what) {
    return absl::FailedPreconditionError(absl::StrCat(
        path, ": this checkpoint was made by a different run (", what,
        "); remove it or point checkpoint.dir elsewhere to start fresh"));
  };
  auto meta = [&](const char* key) {
    auto it = ckpt.metadata.find(key);
    return it == ckpt.metadata.end() ? std::string() : it->second;
  };
  if (meta("train.method") != TrainMethodName(recipe_.method)) {
    return mismatch(absl::StrCat("method ", meta("train.method"), ", recipe ", TrainMethodName(recipe_.method)));
  }
  if (meta("train.loss") != LossKindName(recipe_.loss)) {
    return mismatch(absl::StrCat("loss ", meta("train.loss"), ", recipe ", LossKindName(recipe_.loss)));
  }
  ANVIL_ASSIGN_OR_RETURN(const int64_t examples, MetaInt(ckpt, path, "data.examples"));
  if (examples != order_->num_examples()) {
    return mismatch(absl::StrCat(examples, " training examples, now ", order_->num_examples()));
  }
  std::vector<TrainParam>& params = model_->params();
  auto take = [&](const std::string& name, const TrainParam& p, std::vector<float>* into) -> absl::Status {
    const CheckpointTensor* t = ckpt.Find(name);
    if (t == nullptr || t->shape != p.shape) return mismatch(absl::StrCat("tensor ", name));
    *into = t->data;
    return absl::OkStatus();
  };
  optimizer_->m().assign(params.size(), {});
  optimizer_->v().assign(params.size(), {});
  for (size_t i = 0; i < params.size(); ++i) {
    ANVIL_RETURN_IF_ERROR(take(kParam + params[i].name, params[i], &params[i].value));
    ANVIL_RETURN_IF_ERROR(take(kMoment1 + params[i].name, params[i], &optimizer_->m()[i]));
    ANVIL_RETURN_IF_ERROR(take(kMoment2 + params[i].name, params[i], &optimizer_->v()[i]));
  }
  ANVIL_ASSIGN_OR_RETURN(const int64_t adam_step, MetaInt(ckpt, path, "adam.step"));
  ANVIL_ASSIGN_OR_RETURN(const int64_t epoch, MetaInt(ckpt, path, "data.epoch"));
  ANVIL_ASSIGN_OR_RETURN(const int64_t index, MetaInt(ckpt, path, "data.index"));
  optimizer_->set_step(adam_step);
  ANVIL_RETURN_IF_ERROR(order_->Seek({epoch, index}));
  if (options_.progress && leader()) {
    std::fprintf(stderr, "anvil finetune: resuming from %s (step %lld)\n", path.c_str(),
                 static_cast<long long>(ckpt.step));
  }
  return ckpt.step;
}

absl::Status FinetuneRun::OpenMetrics(int64_t resumed_step) {
  const std::string path = MetricsPath(recipe_);
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::string kept;
  if (resumed_step > 0) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      // A killed run can leave a torn last line; it and any step past the checkpoint go.
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= resumed_step) {
        kept += line + "\n";
      }
    }
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << kept;
    if (!out) return absl::FailedPreconditionError(absl::StrCat("log.metrics: cannot write ", tmp));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::FailedPreconditionError(absl::StrCat("log.metrics: cannot rename ", tmp, " to ", path,
                                                      ": ", std::strerror(errno)));
  }
  metrics_fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (metrics_fd_ < 0) {
    return absl::FailedPreconditionError(absl::StrCat("log.metrics: cannot open ", path, ": ",
                                                      std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status FinetuneRun::AppendMetrics(const StepMetrics& m) {
  const std::string line = m.ToJson() + "\n";
  // One write per line: a kill leaves at most one torn line, which OpenMetrics drops.
  if (::write(metrics_fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return absl::FailedPreconditionError(absl::StrCat("log.metrics: write failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace anvil::train
