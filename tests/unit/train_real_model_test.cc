// The real model end to end: QLoRA SFT of SmolLM2-135M-Instruct (Q4_1, frozen base stays
// quantized) on the synthetic NER training split (scripts/data/make_ner.py) for a CI-sized run
// lowers the training loss by at least 30%; the merged F32 GGUF loads in our runtime and its
// logits equal the trained model's (base + adapters) logits. Skips when the model is absent.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/llama_model.h"
#include "model/trainable_llama.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"
#include "train/dataset.h"
#include "train/recipe.h"
#include "train/render.h"
#include "train/trainer.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;
using ::anvil::testing::IsOk;

TEST(TrainRealModelTest, QLoraSftOnNerLowersLossAndTheMergedModelLoads) {
  if (!fs::exists(testing::Q41ModelPath())) GTEST_SKIP() << "no " << testing::Q41ModelPath();
  const std::string dir = ::testing::TempDir() + "/train_real_" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string gen = absl::StrCat("python3 ", ANVIL_FIXTURES_DIR, "/../../scripts/data/make_ner.py --out ",
                                       dir, "/ner --seed 42 --train 400 --dev 20 --test 20 > /dev/null");
  if (std::system(gen.c_str()) != 0) GTEST_SKIP() << "python3 could not run make_ner.py";
  std::ofstream(dir + "/recipe.yaml") << "model: " << testing::Q41ModelPath() << R"(
method: qlora
loss: sft
data: {train: ner/train.jsonl, max_length: 256}
lora: {rank: 8, alpha: 16, targets: [q, k, v, o, gate, up, down]}
optim: {lr: 1.0e-3}
schedule: {warmup_steps: 2, decay: cosine}
train: {steps: 24, micro_batch: 4, threads: 2, seed: 42}
checkpoint: {every: 0}
output: {dir: out, adapter: [peft, gguf], merged: f32}
)";
  auto recipe = train::LoadRecipe(dir + "/recipe.yaml");
  ASSERT_THAT(recipe.status(), IsOk());
  train::RunOptions opts;
  opts.progress_tty = false;
  auto result = train::RunFinetune(*recipe, opts);
  ASSERT_THAT(result.status(), IsOk());
  const std::vector<double>& l = result->losses;
  ASSERT_EQ(l.size(), 24u);
  // The first step against the mean of the last five (single steps are noisy).
  const double tail = std::accumulate(l.end() - 5, l.end(), 0.0) / 5.0;
  std::printf("loss: step 1 %.4f, mean of steps 20-24 %.4f (%.0f%% lower)\n", l[0], tail,
              100.0 * (1.0 - tail / l[0]));
  EXPECT_LE(tail, 0.7 * l[0]);
  for (const char* f : {"/out/adapter/adapter_model.safetensors", "/out/adapter/adapter_config.json",
                        "/out/adapter.gguf", "/out/merged-f32.gguf"}) {
    EXPECT_TRUE(fs::exists(dir + f)) << f;
  }

  // The merged model in the inference runtime vs the trained model (base + adapters, restored
  // from the last checkpoint) on a rendered test example.
  auto merged = LlamaModel::Load(dir + "/out/merged-f32.gguf");
  ASSERT_THAT(merged.status(), IsOk());
  auto base = LlamaModel::Load(testing::Q41ModelPath());
  ASSERT_THAT(base.status(), IsOk());
  auto data = train::ReadJsonlFile(dir + "/ner/test.jsonl");
  ASSERT_THAT(data.status(), IsOk());
  train::ChatRenderer renderer((*base)->tokenizer(), *(*base)->chat_template());
  auto ex = renderer.Render(data->chats[0], train::LossMask::kCompletion);
  ASSERT_THAT(ex.status(), IsOk());
  auto ctx = Context::Create(**merged, {});
  ASSERT_THAT(ctx.status(), IsOk());
  ASSERT_THAT((*ctx)->Eval(ex->tokens, LogitsRequest::All()), IsOk());

  TrainableOptions to;
  to.method = TrainMethod::kQLora;
  to.lora = recipe->lora;
  auto trained = TrainableLlama::Create(**base, to);
  ASSERT_THAT(trained.status(), IsOk());
  auto adapter_file = gguf::GgufFile::Open(dir + "/out/adapter.gguf");
  ASSERT_THAT(adapter_file.status(), IsOk());
  for (TrainParam& p : (*trained)->params()) {
    const gguf::TensorInfo* t = (*adapter_file)->FindTensor(p.name);
    ASSERT_NE(t, nullptr) << p.name;
    std::memcpy(p.value.data(), t->data, p.value.size() * sizeof(float));
  }
  SequenceBatch b;
  b.Add(ex->tokens);
  ASSERT_THAT((*trained)->Forward(b, {.record = false}), IsOk());
  const int64_t v = (*merged)->config().n_vocab;
  double worst = 0.0;
  for (int64_t i = 0; i < b.n_tokens(); ++i) {
    for (int64_t j = 0; j < v; ++j) {
      worst = std::max(worst, std::fabs(double{(*trained)->logits()[i * v + j]} - (*ctx)->logits(i)[j]));
    }
  }
  std::printf("merged F32 model vs base + adapters: max |logit difference| %.3g\n", worst);
  EXPECT_LT(worst, 2e-2);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace anvil
