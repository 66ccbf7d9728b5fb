// RunFinetune end to end on the tiny model: a DPO run with LoRA writes TRL's metrics and an eval
// reward accuracy; a full fine-tuning SFT run with packing and gradient checkpointing exports a
// merged GGUF that loads; a LoRA checkpoint reads back (for `anvil merge`) as the adapters the run
// exports, a full one is refused as an adapter; and a recipe whose loss does not fit its data is
// refused up front.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/core/status_macros.h"
#include "model/llama_model.h"
#include "model/tiny_model.h"
#include "tests/testing/status_matchers.h"
#include "model/gguf.h"
#include "model/lora.h"
#include "train/adapter_read.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;
using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

std::string Dir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/train_trainer_" + name + "_" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  EXPECT_TRUE(WriteTinyLlamaGguf({}, dir + "/tiny.gguf").ok());
  std::string chat, pref;
  for (int i = 0; i < 8; ++i) {
    chat += absl::StrCat(R"({"messages": [{"role": "user", "content": "Name )", i,
                         R"(?"}, {"role": "assistant", "content": "Ada )", i, R"("}]})", "\n");
    pref += absl::StrCat(R"({"prompt": "Name )", i, R"(?", "chosen": "Ada )", i,
                         R"(", "rejected": "Bob )", i + 1, R"("})", "\n");
  }
  std::ofstream(dir + "/chat.jsonl") << chat;
  std::ofstream(dir + "/pref.jsonl") << pref;
  return dir;
}

absl::StatusOr<train::RunResult> RunRecipe(const std::string& dir, const std::string& yaml) {
  std::ofstream(dir + "/r.yaml") << yaml;
  ANVIL_ASSIGN_OR_RETURN(train::Recipe r, train::LoadRecipe(dir + "/r.yaml"));
  train::RunOptions o;
  o.progress = false;
  return train::RunFinetune(r, o);
}

TEST(TrainerTest, DpoWithLoraLogsTrlMetrics) {
  const std::string dir = Dir("dpo");
  auto r = RunRecipe(dir, R"(model: tiny.gguf
method: lora
loss: dpo
data: {train: pref.jsonl, eval: pref.jsonl, max_length: 64}
dpo: {beta: 0.1}
optim: {lr: 0.01}
train: {steps: 3, micro_batch: 2, grad_accum: 2}
output: {dir: out, adapter: [peft]}
)");
  ASSERT_THAT(r.status(), IsOk());
  ASSERT_EQ(r->losses.size(), 3u);
  // With B = 0 the policy equals the reference at step 1: loss = log 2.
  EXPECT_NEAR(r->losses[0], std::log(2.0), 1e-6);
  EXPECT_GE(r->eval_reward_accuracy, 0.0);
  EXPECT_LE(r->eval_reward_accuracy, 1.0);
  std::ifstream in(dir + "/out/metrics.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  for (const char* key : {"rewards/chosen", "rewards/rejected", "rewards/accuracies",
                          "rewards/margins", "logps/chosen", "logps/rejected"}) {
    EXPECT_NE(line.find(key), std::string::npos) << key << " missing from " << line;
  }
  EXPECT_TRUE(fs::exists(dir + "/out/adapter/adapter_model.safetensors"));
}

TEST(TrainerTest, FullFineTuningWithPackingAndCheckpointingExportsALoadableModel) {
  const std::string dir = Dir("full");
  auto r = RunRecipe(dir, R"(model: tiny.gguf
method: full
loss: sft
data: {train: chat.jsonl, max_length: 96, packing: true}
optim: {lr: 0.001, weight_decay: 0.01}
train: {steps: 2, micro_batch: 2, gradient_checkpointing: true}
output: {dir: out, merged: f16}
)");
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_EQ(r->losses.size(), 2u);
  auto m = LlamaModel::Load(dir + "/out/merged-f16.gguf");
  EXPECT_THAT(m.status(), IsOk());
  // `anvil merge` refuses its checkpoint: there are no adapters in it.
  ANVIL_ASSERT_OK_AND_ASSIGN(auto base, gguf::GgufFile::Open(dir + "/tiny.gguf"));
  EXPECT_THAT(train::ReadAdapter(dir + "/out/checkpoints/ckpt-00000002.safetensors", *base),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("a checkpoint of full training holds no LoRA adapters")));
}

TEST(TrainerTest, LoraCheckpointHoldsTheAdaptersTheRunExports) {
  const std::string dir = Dir("ckpt");
  auto r = RunRecipe(dir, R"(model: tiny.gguf
method: lora
loss: sft
data: {train: chat.jsonl, max_length: 64}
lora: {rank: 4, alpha: 12.5, rslora: true, targets: [q, k, down]}
optim: {lr: 0.01}
train: {steps: 3, micro_batch: 2}
checkpoint: {every: 2, keep: 0}
output: {dir: out, adapter: [peft]}
)");
  ASSERT_THAT(r.status(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto base, gguf::GgufFile::Open(dir + "/tiny.gguf"));
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const LoraAdapters got,
      train::ReadAdapter(dir + "/out/checkpoints/ckpt-00000003.safetensors", *base));
  ANVIL_ASSERT_OK_AND_ASSIGN(const LoraAdapters want,
                             train::ReadAdapter(dir + "/out/adapter", *base));
  EXPECT_EQ(got.config.rank, 4);
  EXPECT_EQ(got.config.alpha, 12.5f);
  EXPECT_TRUE(got.config.rslora);
  EXPECT_EQ(got.config.targets, want.config.targets);
  ASSERT_EQ(got.pairs.size(), 6u);  // 3 modules x 2 layers
  ASSERT_EQ(want.pairs.size(), 6u);
  for (size_t i = 0; i < got.pairs.size(); ++i) {
    EXPECT_EQ(got.pairs[i].BaseName(), want.pairs[i].BaseName());
    EXPECT_EQ(got.pairs[i].a, want.pairs[i].a);
    EXPECT_EQ(got.pairs[i].b, want.pairs[i].b);
  }
  // The step-2 checkpoint holds earlier adapters: not the exported ones.
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const LoraAdapters step2,
      train::ReadAdapter(dir + "/out/checkpoints/ckpt-00000002.safetensors", *base));
  EXPECT_NE(step2.pairs[0].b, want.pairs[0].b);
}

TEST(TrainerTest, LossThatDoesNotFitTheDataIsRefused) {
  const std::string dir = Dir("mismatch");
  auto r = RunRecipe(dir, R"(model: tiny.gguf
method: lora
loss: dpo
data: {train: chat.jsonl}
output: {dir: out}
)");
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                   HasSubstr("loss dpo needs preference records")));
}

}  // namespace
}  // namespace anvil
