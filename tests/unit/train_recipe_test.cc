// Recipes: defaults, every field read, path resolution, the committed recipes/*.yaml, and a
// table of malformed recipes with the file:line:column and field path each error must name.
#include "train/recipe.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::train {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kMinimal[] =
    "model: m.gguf\n"
    "method: lora\n"
    "data:\n"
    "  train: d.jsonl\n"
    "output:\n"
    "  dir: out\n";

TEST(RecipeTest, MinimalRecipeGetsTheDefaults) {
  ANVIL_ASSERT_OK_AND_ASSIGN(const Recipe r, ParseRecipe(kMinimal, "r.yaml", "/base"));
  EXPECT_EQ(r.source, "r.yaml");
  EXPECT_EQ(r.model, "/base/m.gguf");
  EXPECT_EQ(r.method, TrainMethod::kLora);
  EXPECT_EQ(r.loss, LossKind::kSft);
  EXPECT_EQ(r.data.train, "/base/d.jsonl");
  EXPECT_EQ(r.data.eval, "");
  EXPECT_EQ(r.data.max_length, 512);
  EXPECT_FALSE(r.data.packing);
  EXPECT_TRUE(r.data.shuffle);
  EXPECT_EQ(r.data.seed, 42u);
  EXPECT_EQ(r.lora.rank, 8);
  EXPECT_FLOAT_EQ(r.lora.alpha, 16.0f);
  EXPECT_FLOAT_EQ(r.lora.dropout, 0.0f);
  EXPECT_FALSE(r.lora.rslora);
  EXPECT_EQ(r.lora.targets.size(), 7u);
  EXPECT_FLOAT_EQ(r.lora.scale(), 2.0f);
  EXPECT_DOUBLE_EQ(r.dpo.beta, 0.1);
  EXPECT_DOUBLE_EQ(r.optim.lr, 2e-4);
  EXPECT_DOUBLE_EQ(r.optim.beta1, 0.9);
  EXPECT_DOUBLE_EQ(r.optim.beta2, 0.999);
  EXPECT_DOUBLE_EQ(r.optim.eps, 1e-8);
  EXPECT_DOUBLE_EQ(r.optim.weight_decay, 0.0);
  EXPECT_DOUBLE_EQ(r.optim.grad_clip, 1.0);
  EXPECT_EQ(r.schedule.warmup_steps, 0);
  EXPECT_EQ(r.schedule.decay, LrDecay::kLinear);
  EXPECT_DOUBLE_EQ(r.schedule.min_lr_ratio, 0.0);
  EXPECT_EQ(r.train.steps, 0);
  EXPECT_DOUBLE_EQ(r.train.epochs, 1.0);
  EXPECT_EQ(r.train.micro_batch, 4);
  EXPECT_EQ(r.train.grad_accum, 1);
  EXPECT_EQ(r.train.threads, 2);
  EXPECT_EQ(r.train.seed, 42u);
  EXPECT_FALSE(r.train.gradient_checkpointing);
  EXPECT_EQ(r.checkpoint.dir, "/base/out/checkpoints");
  EXPECT_EQ(r.checkpoint.every, 100);
  EXPECT_EQ(r.checkpoint.keep, 2);
  EXPECT_EQ(r.output.dir, "/base/out");
  EXPECT_THAT(r.output.adapter, ElementsAre(AdapterFormat::kPeft, AdapterFormat::kGguf));
  EXPECT_EQ(r.output.merged, MergedType::kNone);
  EXPECT_EQ(r.log.metrics, "/base/out/metrics.jsonl");
  EXPECT_EQ(r.log.every, 1);
  // 10 examples, 4 per step, one epoch.
  EXPECT_EQ(TotalSteps(r, 10), 3);
  EXPECT_EQ(TotalSteps(r, 10, 2), 2);
  EXPECT_EQ(TotalSteps(r, 0), 1);
}

TEST(RecipeTest, BpeDropoutIsReadForSft) {
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const Recipe r,
      ParseRecipe("model: m\nmethod: lora\ndata: {train: t, bpe_dropout: 0.1}\noutput: {dir: o}\n",
                  "r.yaml", ""));
  EXPECT_DOUBLE_EQ(r.data.bpe_dropout, 0.1);
}

TEST(RecipeTest, EveryFieldIsRead) {
  const std::string yaml = R"(
model: /abs/m.gguf
method: qlora
loss: dpo
data: {train: t.jsonl, eval: e.jsonl, max_length: 128, packing: false, shuffle: False, seed: 7}
lora:
  rank: 16
  alpha: 32
  dropout: 0.05
  rslora: true
  targets: [q, v, down]
dpo: {beta: 0.25}
optim: {lr: 1e-3, beta1: 0.8, beta2: 0.95, eps: 1.0e-6, weight_decay: 0.01, grad_clip: 0}
schedule: {warmup_steps: 5, decay: cosine, min_lr_ratio: 0.1}
train: {steps: 50, micro_batch: 2, grad_accum: 8, threads: 4, seed: 9, gradient_checkpointing: true}
checkpoint: {dir: ckpt, every: 10, keep: 0}
output: {dir: ~/runs/x, adapter: [gguf], merged: f16}
log: {metrics: /tmp/m.jsonl, every: 5}
)";
  const char* home = std::getenv("HOME");
  const std::string saved_home = home != nullptr ? home : "";
  setenv("HOME", "/home/tester", 1);
  const absl::StatusOr<Recipe> parsed = ParseRecipe(yaml, "r.yaml", "/base/recipes");
  setenv("HOME", saved_home.c_str(), 1);
  ANVIL_ASSERT_OK_AND_ASSIGN(const Recipe r, parsed);
  EXPECT_EQ(r.model, "/abs/m.gguf");
  EXPECT_EQ(r.method, TrainMethod::kQLora);
  EXPECT_EQ(r.loss, LossKind::kDpo);
  EXPECT_EQ(r.data.eval, "/base/recipes/e.jsonl");
  EXPECT_EQ(r.data.max_length, 128);
  EXPECT_FALSE(r.data.shuffle);
  EXPECT_EQ(r.data.seed, 7u);
  EXPECT_EQ(r.lora.rank, 16);
  EXPECT_FLOAT_EQ(r.lora.alpha, 32.0f);
  EXPECT_FLOAT_EQ(r.lora.dropout, 0.05f);
  EXPECT_TRUE(r.lora.rslora);
  EXPECT_THAT(r.lora.targets, ElementsAre(LoraModule::kQ, LoraModule::kV, LoraModule::kDown));
  EXPECT_DOUBLE_EQ(r.dpo.beta, 0.25);
  EXPECT_DOUBLE_EQ(r.optim.lr, 1e-3);
  EXPECT_DOUBLE_EQ(r.optim.beta1, 0.8);
  EXPECT_DOUBLE_EQ(r.optim.beta2, 0.95);
  EXPECT_DOUBLE_EQ(r.optim.eps, 1e-6);
  EXPECT_DOUBLE_EQ(r.optim.weight_decay, 0.01);
  EXPECT_DOUBLE_EQ(r.optim.grad_clip, 0.0);
  EXPECT_EQ(r.schedule.warmup_steps, 5);
  EXPECT_EQ(r.schedule.decay, LrDecay::kCosine);
  EXPECT_DOUBLE_EQ(r.schedule.min_lr_ratio, 0.1);
  EXPECT_EQ(r.train.steps, 50);
  EXPECT_EQ(r.train.micro_batch, 2);
  EXPECT_EQ(r.train.grad_accum, 8);
  EXPECT_EQ(r.train.threads, 4);
  EXPECT_EQ(r.train.seed, 9u);
  EXPECT_TRUE(r.train.gradient_checkpointing);
  EXPECT_EQ(r.checkpoint.dir, "/base/recipes/ckpt");
  EXPECT_EQ(r.checkpoint.every, 10);
  EXPECT_EQ(r.checkpoint.keep, 0);
  EXPECT_EQ(r.output.dir, "/home/tester/runs/x");
  EXPECT_THAT(r.output.adapter, ElementsAre(AdapterFormat::kGguf));
  EXPECT_EQ(r.output.merged, MergedType::kF16);
  EXPECT_EQ(r.log.metrics, "/tmp/m.jsonl");
  EXPECT_EQ(r.log.every, 5);
  EXPECT_EQ(TotalSteps(r, 1000), 50);
}

TEST(RecipeTest, DataSeedFollowsTrainSeedAndFullWritesTheModel) {
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const Recipe r,
      ParseRecipe("model: m\nmethod: full\ndata: {train: t}\noutput: {dir: o}\ntrain: {seed: 5, "
                  "epochs: 2.5}\n",
                  "r.yaml", ""));
  EXPECT_EQ(r.data.seed, 5u);
  EXPECT_EQ(r.model, "m");  // no base directory: left relative
  EXPECT_TRUE(r.output.adapter.empty());
  EXPECT_EQ(r.output.merged, MergedType::kF32);
  EXPECT_EQ(TotalSteps(r, 10), 7);  // ceil(2.5 * 10 / 4)
}

struct BadRecipe {
  std::string yaml;
  const char* expected;
};

TEST(RecipeTest, MalformedRecipesNameTheFieldAndLine) {
  const std::string base(kMinimal);
  const BadRecipe cases[] = {
      {base + "lora:\n  rnak: 8\n", "r.yaml:8:3: lora.rnak: unknown field (did you mean \"rank\"?)"},
      {base + "lora:\n  rank: eight\n", "r.yaml:8:9: lora.rank: expected integer, got \"eight\""},
      {base + "lora:\n  rank: \"8\"\n", "lora.rank: expected integer, got \"8\""},
      {base + "lora:\n  rank: 8.5\n", "lora.rank: expected integer, got \"8.5\""},
      {base + "lora:\n  rank: 0\n", "r.yaml:8:9: lora.rank: must be in [1, 65536], got 0"},
      {base + "lora:\n  rank:\n", "lora.rank: expected integer, got null"},
      {base + "lora:\n  alpha: -1\n", "lora.alpha: must be > 0, got -1"},
      {base + "lora:\n  dropout: 1\n", "lora.dropout: must be in [0, 1), got 1"},
      {base + "lora:\n  rslora: yes\n", "lora.rslora: expected true or false, got \"yes\""},
      {base + "lora:\n  targets: [q, qq]\n",
       "r.yaml:8:16: lora.targets[1]: expected one of q, k, v, o, gate, up, down; got \"qq\""},
      {base + "lora:\n  targets: [q, q]\n", "lora.targets[1]: \"q\" listed twice"},
      {base + "lora:\n  targets: q\n", "lora.targets: expected a list, got \"q\""},
      {base + "lora: 8\n", "r.yaml:7:7: lora: expected a mapping, got \"8\""},
      {base + "optim:\n  lr: -2e-4\n", "r.yaml:8:7: optim.lr: must be > 0, got -0.0002"},
      {base + "optim:\n  lr: 0\n", "optim.lr: must be > 0"},
      {base + "optim:\n  lr: .inf\n", "optim.lr: expected number, got \".inf\""},
      {base + "optim:\n  beta2: 1.0\n", "optim.beta2: must be in [0, 1)"},
      {base + "optim:\n  name: sgd\n", "optim.name: unknown field"},
      {base + "schedule:\n  decay: cosin\n",
       "schedule.decay: expected one of linear, cosine, constant; got \"cosin\" (did you mean "
       "\"cosine\"?)"},
      {base + "schedule:\n  min_lr_ratio: 2\n", "schedule.min_lr_ratio: must be in [0, 1]"},
      {base + "train:\n  micro_batch: 0\n", "train.micro_batch: must be in [1, 1048576], got 0"},
      {base + "train:\n  steps: 10\n  epochs: 2\n",
       "train.epochs: give train.steps or train.epochs, not both"},
      {base + "train:\n  seed: -1\n", "train.seed: expected non-negative integer, got \"-1\""},
      {base + "train:\n  steps: 10\nschedule:\n  warmup_steps: 20\n",
       "schedule.warmup_steps: must be <= train.steps (10)"},
      {base + "data:\n  max_length: 1\n", "r.yaml:7:1: data: given twice (first on line 3)"},
      {"model: m\nmethod: lora\ndata: {train: t, max_length: 1}\noutput: {dir: o}\n",
       "r.yaml:3:30: data.max_length: must be in [2, 1048576], got 1"},
      {"model: m\nmethod: lora\ndata: {train: t, packing: 1}\noutput: {dir: o}\n",
       "data.packing: expected true or false, got \"1\""},
      {"model: m\nmethod: lora\nloss: dpo\ndata: {train: t, packing: true}\noutput: {dir: o}\n",
       "data.packing: not supported with loss dpo"},
      {"model: m\nmethod: lora\ndata: {train: t, bpe_dropout: 1}\noutput: {dir: o}\n",
       "data.bpe_dropout: must be in [0, 1), got 1"},
      {"model: m\nmethod: lora\nloss: dpo\ndata: {train: t, bpe_dropout: 0.1}\noutput: {dir: o}\n",
       "data.bpe_dropout: not supported with loss dpo"},
      {base + "dpo:\n  beta: 0.1\n", "r.yaml:7:1: dpo: only for loss dpo"},
      {base + "method: full\n", "method: given twice"},
      {"model: m\nmethod: full\ndata: {train: t}\noutput: {dir: o}\nlora: {rank: 4}\n",
       "r.yaml:5:1: lora: only for method lora or qlora (method is full)"},
      {"model: m\nmethod: full\ndata: {train: t}\noutput: {dir: o, merged: none}\n",
       "output.merged: method full writes the whole model"},
      {"model: m\nmethod: lora\ndata: {train: t}\noutput: {dir: o, adapter: [], merged: none}\n",
       "output.adapter: empty and output.merged is none"},
      {"model: m\nmethod: lorra\ndata: {train: t}\noutput: {dir: o}\n",
       "r.yaml:2:9: method: expected one of full, lora, qlora; got \"lorra\" (did you mean "
       "\"lora\"?)"},
      {"method: lora\ndata: {train: t}\noutput: {dir: o}\n", "r.yaml: model: missing"},
      {"model: m\ndata: {train: t}\noutput: {dir: o}\n", "r.yaml: method: missing"},
      {"model: m\nmethod: lora\noutput: {dir: o}\n", "r.yaml: data.train: missing"},
      {"model: m\nmethod: lora\ndata: {train: t}\n", "r.yaml: output.dir: missing"},
      {"model: [a, b]\nmethod: lora\ndata: {train: t}\noutput: {dir: o}\n",
       "r.yaml:1:8: model: expected string, got a list"},
      {"model: \"\"\nmethod: lora\ndata: {train: t}\noutput: {dir: o}\n",
       "model: must not be empty"},
      {"model: m\nmethod: lora\ndata: {train: t\noutput: {dir: o}\n", "r.yaml:4:"},
      {"model: m\n  method: lora\n", "r.yaml:2:9: YAML error:"},
      {"- a\n- b\n", "r.yaml:1:1: expected a mapping of fields, got a list"},
      {"", "r.yaml: the recipe is empty"},
      {"# just a comment\n", "r.yaml: the recipe is empty"},
      {base + "---\nmodel: n\n", "r.yaml: 2 YAML documents"},
      {base + "[1]: x\n", "keys must be plain names"},
      {base + "<<: {a: 1}\n", "<<: unknown field"},
  };
  for (const BadRecipe& c : cases) {
    EXPECT_THAT(ParseRecipe(c.yaml, "r.yaml", "/base"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expected)))
        << c.yaml;
  }
}

TEST(RecipeTest, AllProblemsAreReportedInFileOrder) {
  const absl::Status s =
      ParseRecipe("model: m\nmethod: lora\nlora: {rank: x, alpha: y}\ntrain: {steps: -3}\n",
                  "r.yaml", "")
          .status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
  const std::string msg(s.message());
  const size_t rank = msg.find("lora.rank"), alpha = msg.find("lora.alpha"),
               steps = msg.find("train.steps"), train = msg.find("data.train: missing");
  ASSERT_NE(rank, std::string::npos) << msg;
  ASSERT_NE(alpha, std::string::npos) << msg;
  ASSERT_NE(steps, std::string::npos) << msg;
  ASSERT_NE(train, std::string::npos) << msg;
  EXPECT_LT(rank, alpha);
  EXPECT_LT(alpha, steps);
  EXPECT_LT(steps, train);  // problems without a line come last
}

TEST(RecipeTest, NeverThrowsOnGarbage) {
  const std::string samples[] = {"{", "[", "a: [", "a: {b: ", "&a a: *a", "!!binary x: y",
                                 "a: !!int x", "? [a]\n: b", "\t\tmodel: m", "\xFF\xFE",
                                 std::string(100, '['), "a: *undefined"};
  for (const std::string& s : samples) {
    EXPECT_THAT(ParseRecipe(s, "g.yaml", ""), StatusIs(absl::StatusCode::kInvalidArgument)) << s;
  }
}

TEST(RecipeFileTest, CommittedRecipesParse) {
  EXPECT_THAT(LoadRecipe("/no/such/recipe.yaml"), StatusIs(absl::StatusCode::kNotFound));
  const std::string dir = testing::FixturePath("../../recipes");
  ANVIL_ASSERT_OK_AND_ASSIGN(const Recipe lora, LoadRecipe(dir + "/ner-lora.yaml"));
  EXPECT_EQ(lora.method, TrainMethod::kLora);
  EXPECT_EQ(lora.loss, LossKind::kSft);
  EXPECT_THAT(lora.model, HasSubstr("SmolLM2-135M-Instruct"));
  EXPECT_TRUE(std::filesystem::path(lora.data.train).is_absolute());
  EXPECT_THAT(lora.data.train, HasSubstr("data/ner/train.jsonl"));
  EXPECT_THAT(lora.data.train, Not(HasSubstr("..")));
  ANVIL_ASSERT_OK_AND_ASSIGN(const Recipe dpo, LoadRecipe(dir + "/ner-dpo.yaml"));
  EXPECT_EQ(dpo.loss, LossKind::kDpo);
  EXPECT_THAT(dpo.data.train, HasSubstr("train_pref.jsonl"));

  const std::string path = ::testing::TempDir() + "/train_recipe_test.yaml";
  {
    std::ofstream out(path);
    out << kMinimal << "lora:\n  rank: eight\n";
  }
  EXPECT_THAT(LoadRecipe(path), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr(path + ":8:9: lora.rank: expected integer")));
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace anvil::train
