// Fine-tuning recipes: the YAML file `anvil finetune RECIPE.yaml` reads, as a typed struct with
// defaults that users of TRL / PEFT / HF Trainer expect. Parsing is strict: an unknown field,
// a wrong type, a value out of range or a YAML syntax error is an InvalidArgument that names
// the file, line and field path ("r.yaml:7:9: lora.rank: expected integer, got \"eight\"").
// Running the recipe is the trainer's job.
#ifndef ANVIL_TRAIN_RECIPE_H_
#define ANVIL_TRAIN_RECIPE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/lora.h"
#include "model/trainable_llama.h"  // TrainMethod, TrainMethodName

namespace anvil::train {

enum class LossKind { kSft, kLm, kDpo };          // "sft", "lm", "dpo"
enum class LrDecay { kLinear, kCosine, kConstant };
enum class AdapterFormat { kPeft, kGguf };
enum class MergedType { kNone, kF32, kF16 };

const char* LossKindName(LossKind l);
const char* LrDecayName(LrDecay d);
const char* AdapterFormatName(AdapterFormat f);
const char* MergedTypeName(MergedType t);

struct DataSection {
  std::string train;        // JSONL, required
  std::string eval;         // JSONL, optional ("" = none)
  int64_t max_length = 512; // tokens per sequence; longer ones keep their start
  bool packing = false;
  bool shuffle = true;
  uint64_t seed = 42;       // default: train.seed
  // BPE-dropout probability for the training examples (SFT and LM losses): each example is
  // tokenized once in a segmentation drawn from data.seed; eval data is never dropped out.
  double bpe_dropout = 0.0;
};

struct DpoSection {
  double beta = 0.1;
};

struct OptimSection {  // AdamW
  double lr = 2e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  double grad_clip = 1.0;  // max global gradient norm; 0 = off
};

struct ScheduleSection {
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::kLinear;  // HF Trainer's default lr_scheduler_type
  double min_lr_ratio = 0.0;         // the decay ends at lr * min_lr_ratio
};

struct TrainSection {
  int64_t steps = 0;     // optimizer steps; 0 = derived from epochs
  double epochs = 1.0;   // used when steps == 0
  int64_t micro_batch = 4;
  int64_t grad_accum = 1;
  int64_t threads = 2;
  uint64_t seed = 42;
  bool gradient_checkpointing = false;
};

struct CheckpointSection {
  std::string dir;      // default <output.dir>/checkpoints
  int64_t every = 100;  // optimizer steps between checkpoints; 0 = only at the end
  int64_t keep = 2;     // newest checkpoints kept; 0 = all
};

struct OutputSection {
  std::string dir;                     // required
  std::vector<AdapterFormat> adapter;  // lora/qlora: default [peft, gguf]; full: empty
  MergedType merged = MergedType::kNone;  // lora/qlora: default none; full: default f32
};

struct LogSection {
  std::string metrics;  // JSONL of step metrics; default <output.dir>/metrics.jsonl
  int64_t every = 1;    // optimizer steps between lines
};

// rank 8, alpha 16, dropout 0, every linear module (q, k, v, o, gate, up, down): the recipe's
// defaults, which differ from LoraConfig's (PEFT's alpha 8 on q and v only).
LoraConfig DefaultRecipeLora();

struct Recipe {
  std::string source;  // the recipe file (or the name given to ParseRecipe)
  std::string model;   // GGUF path, required
  TrainMethod method = TrainMethod::kLora;  // required in the file
  LossKind loss = LossKind::kSft;
  DataSection data;
  LoraConfig lora = DefaultRecipeLora();  // only for lora / qlora
  DpoSection dpo;                         // only for loss dpo
  OptimSection optim;
  ScheduleSection schedule;
  TrainSection train;
  CheckpointSection checkpoint;
  OutputSection output;
  LogSection log;
};

// Reads and validates a recipe file. NotFound when it does not exist. Relative paths (model,
// data.*, checkpoint.dir, output.dir, log.metrics) resolve against the recipe's directory;
// a leading "~/" is the home directory.
absl::StatusOr<Recipe> LoadRecipe(const std::string& path);
// The same for YAML text; `name` prefixes messages, relative paths resolve against `base_dir`
// (left relative when it is empty).
absl::StatusOr<Recipe> ParseRecipe(std::string_view yaml, std::string_view name,
                                   std::string_view base_dir);

// Optimizer steps the run takes: train.steps, or ceil(epochs * examples / (micro_batch *
// grad_accum * world_size)), at least 1.
int64_t TotalSteps(const Recipe& recipe, int64_t num_train_examples, int64_t world_size = 1);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_RECIPE_H_
