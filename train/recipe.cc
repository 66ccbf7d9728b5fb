// Recipe parsing: yaml-cpp builds the node tree (its exceptions stop here), a small strict field
// reader walks it (types, ranges, unknown and duplicate keys, all with file:line:column and the
// field path), then cross-field rules and path resolution. Every problem is collected, so one
// run reports them all.
#include "train/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/status_macros.h"
#include "train/yaml_fields.h"

namespace anvil::train {
namespace {

constexpr size_t kMaxRecipeBytes = 1 << 20;

// Each reader below takes one group of sections, checks its own cross-field rules (method and
// loss are read first) and reports unknown keys. Keys are read in the documented order.
// Returns whether data.seed was given (it defaults to train.seed).
bool ReadData(Section& top, Errors* errors, Recipe* r) {
  Section data = top.Child("data");
  data.String("train", &r->data.train);
  data.String("eval", &r->data.eval);
  data.Int("max_length", &r->data.max_length, 2, int64_t{1} << 20);
  data.Bool("packing", &r->data.packing);
  data.Bool("shuffle", &r->data.shuffle);
  data.Seed("seed", &r->data.seed);
  data.Number("bpe_dropout", &r->data.bpe_dropout, kUnitOpen);
  data.Finish();
  if (!data.Has("train")) errors->Add(nullptr, "data.train", "missing (a JSONL file)");
  if (r->loss == LossKind::kDpo && r->data.packing) {
    errors->Add(data.KeyNode("packing"), "data.packing", "not supported with loss dpo");
  }
  if (r->loss == LossKind::kDpo && data.Has("bpe_dropout")) {
    errors->Add(data.KeyNode("bpe_dropout"), "data.bpe_dropout",
                "not supported with loss dpo (chosen and rejected must share the prompt tokens)");
  }
  return data.Has("seed");
}

void ReadAdaptation(Section& top, Errors* errors, Recipe* r) {
  Section lora = top.Child("lora");
  lora.Int("rank", &r->lora.rank, 1, 65536);
  lora.Number("alpha", &r->lora.alpha, kPositive);
  lora.Number("dropout", &r->lora.dropout, kUnitOpen);
  lora.Bool("rslora", &r->lora.rslora);
  lora.EnumList<LoraModule>("targets", Choices<LoraModule>(std::size(kAllLoraModules), LoraModuleName), &r->lora.targets);
  lora.Finish();
  Section dpo = top.Child("dpo");
  dpo.Number("beta", &r->dpo.beta, kPositive);
  dpo.Finish();
  if (r->method == TrainMethod::kFull && top.Has("lora")) {
    errors->Add(top.KeyNode("lora"), "lora", "only for method lora or qlora (method is full)");
  }
  if (r->loss != LossKind::kDpo && top.Has("dpo")) {
    errors->Add(top.KeyNode("dpo"), "dpo", "only for loss dpo");
  }
}

void ReadOptimization(Section& top, Errors* errors, Recipe* r) {
  Section optim = top.Child("optim");
  optim.Number("lr", &r->optim.lr, kPositive);
  optim.Number("beta1", &r->optim.beta1, kUnitOpen);
  optim.Number("beta2", &r->optim.beta2, kUnitOpen);
  optim.Number("eps", &r->optim.eps, kPositive);
  optim.Number("weight_decay", &r->optim.weight_decay, kNonNegative);
  optim.Number("grad_clip", &r->optim.grad_clip, kNonNegative);
  optim.Finish();
  Section sched = top.Child("schedule");
  sched.Int("warmup_steps", &r->schedule.warmup_steps, 0);
  sched.Enum<LrDecay>("decay", Choices<LrDecay>(3, LrDecayName), &r->schedule.decay);
  sched.Number("min_lr_ratio", &r->schedule.min_lr_ratio, Range{0, 1, false, false});
  sched.Finish();
  Section train = top.Child("train");
  train.Int("steps", &r->train.steps, 1);
  train.Number("epochs", &r->train.epochs, Range{0, 1e6, true, false});
  train.Int("micro_batch", &r->train.micro_batch, 1, 1 << 20);
  train.Int("grad_accum", &r->train.grad_accum, 1, 1 << 20);
  train.Int("threads", &r->train.threads, 1, 1024);
  train.Seed("seed", &r->train.seed);
  train.Bool("gradient_checkpointing", &r->train.gradient_checkpointing);
  train.Finish();
  if (train.Has("steps") && train.Has("epochs")) {
    errors->Add(train.KeyNode("epochs"), "train.epochs",
                "give train.steps or train.epochs, not both");
  }
  if (train.Has("steps") && r->schedule.warmup_steps > r->train.steps) {
    errors->Add(sched.KeyNode("warmup_steps"), "schedule.warmup_steps",
                absl::StrCat("must be <= train.steps (", r->train.steps, ")"));
  }
}

void ReadOutputs(Section& top, Errors* errors, Recipe* r) {
  Section ckpt = top.Child("checkpoint");
  ckpt.String("dir", &r->checkpoint.dir);
  ckpt.Int("every", &r->checkpoint.every, 0);
  ckpt.Int("keep", &r->checkpoint.keep, 0);
  ckpt.Finish();
  Section output = top.Child("output");
  output.String("dir", &r->output.dir);
  const bool full = r->method == TrainMethod::kFull;
  if (!full) r->output.adapter = {AdapterFormat::kPeft, AdapterFormat::kGguf};
  if (full) r->output.merged = MergedType::kF32;
  output.EnumList<AdapterFormat>("adapter", Choices<AdapterFormat>(2, AdapterFormatName),
                                 &r->output.adapter);
  output.Enum<MergedType>("merged", Choices<MergedType>(3, MergedTypeName), &r->output.merged);
  output.Finish();
  Section log = top.Child("log");
  log.String("metrics", &r->log.metrics);
  log.Int("every", &r->log.every, 1);
  log.Finish();
  if (!output.Has("dir")) errors->Add(nullptr, "output.dir", "missing (where results go)");
  if (full && output.Has("adapter")) {
    errors->Add(output.KeyNode("adapter"), "output.adapter",
                "only for method lora or qlora; method full writes the whole model");
  }
  if (full && r->output.merged == MergedType::kNone) {
    errors->Add(output.KeyNode("merged"), "output.merged",
                "method full writes the whole model: choose f32 or f16");
  }
  if (!full && r->output.adapter.empty() && r->output.merged == MergedType::kNone) {
    errors->Add(output.KeyNode("adapter"), "output.adapter",
                "empty and output.merged is none: the run would write nothing");
  }
}

void ResolvePaths(const std::string& base_dir, Recipe* r) {
  for (std::string* p : {&r->model, &r->data.train, &r->data.eval, &r->checkpoint.dir,
                         &r->output.dir, &r->log.metrics}) {
    *p = ResolvePath(*p, base_dir);
  }
  if (r->checkpoint.dir.empty() && !r->output.dir.empty()) {
    r->checkpoint.dir = (std::filesystem::path(r->output.dir) / "checkpoints").string();
  }
  if (r->log.metrics.empty() && !r->output.dir.empty()) {
    r->log.metrics = (std::filesystem::path(r->output.dir) / "metrics.jsonl").string();
  }
}

void ReadRecipe(const YAML::Node& root, Errors* errors, Recipe* r, const std::string& base_dir) {
  Section top(root, "", errors);
  top.String("model", &r->model);
  top.Enum<TrainMethod>("method", Choices<TrainMethod>(3, TrainMethodName), &r->method);
  top.Enum<LossKind>("loss", Choices<LossKind>(3, LossKindName), &r->loss);
  if (!top.Has("model")) errors->Add(nullptr, "model", "missing (the GGUF file to start from)");
  if (!top.Has("method")) errors->Add(nullptr, "method", "missing (full, lora or qlora)");
  const bool data_seed = ReadData(top, errors, r);
  ReadAdaptation(top, errors, r);
  ReadOptimization(top, errors, r);
  if (!data_seed) r->data.seed = r->train.seed;
  ReadOutputs(top, errors, r);
  top.Finish();
  ResolvePaths(base_dir, r);
}

}  // namespace

// Names in enum order (the enums in recipe.h are dense and start at 0).
const char* LossKindName(LossKind l) {
  return std::array{"sft", "lm", "dpo"}[static_cast<size_t>(l)];
}
const char* LrDecayName(LrDecay d) {
  return std::array{"linear", "cosine", "constant"}[static_cast<size_t>(d)];
}
const char* AdapterFormatName(AdapterFormat f) {
  return std::array{"peft", "gguf"}[static_cast<size_t>(f)];
}
const char* MergedTypeName(MergedType t) {
  return std::array{"none", "f32", "f16"}[static_cast<size_t>(t)];
}

LoraConfig DefaultRecipeLora() {
  LoraConfig c;
  c.rank = 8;
  c.alpha = 16.0f;
  c.dropout = 0.0f;
  c.rslora = false;
  c.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
  return c;
}

absl::StatusOr<Recipe> ParseRecipe(std::string_view yaml, std::string_view name_view,
                                   std::string_view base_dir) {
  const std::string name(name_view);
  Recipe r;
  r.source = name;
  ANVIL_RETURN_IF_ERROR(ParseStrictYaml(yaml, name, "recipe", kMaxRecipeBytes,
                                        [&](const YAML::Node& root, Errors* errors) {
                                          ReadRecipe(root, errors, &r, std::string(base_dir));
                                        }));
  return r;
}

absl::StatusOr<Recipe> LoadRecipe(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such recipe file"));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a recipe"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be opened"));
  std::string text(kMaxRecipeBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  const std::string base = std::filesystem::absolute(path, ec).parent_path().string();
  return ParseRecipe(text, path, base);
}

int64_t TotalSteps(const Recipe& recipe, int64_t num_train_examples, int64_t world_size) {
  if (recipe.train.steps > 0) return recipe.train.steps;
  const double per_step = static_cast<double>(recipe.train.micro_batch) *
                          static_cast<double>(recipe.train.grad_accum) *
                          static_cast<double>(std::max<int64_t>(world_size, 1));
  const double steps =
      std::ceil(recipe.train.epochs * static_cast<double>(num_train_examples) / per_step);
  return std::max<int64_t>(1, static_cast<int64_t>(steps));
}

}  // namespace anvil::train
