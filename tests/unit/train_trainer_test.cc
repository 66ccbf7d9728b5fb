// RunFinetune end to end on the tiny model: a DPO run with LoRA writes TRL's metrics and an eval
// reward accuracy; a full fine-tuning SFT run with packing and gradient checkpointing exports a
// merged GGUF that loads; and a recipe whose loss does not fit its data is refused up front.
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
