// Per-request LoRA adapters on the real model (SmolLM2-135M F32): a request with an adapter
// generates what anvil::Generate gives on the merged model (train/export's merged F32 GGUF),
// base requests in the same batch are unchanged, the llama.cpp adapter GGUF and the PEFT
// directory load to the same adapter, a request keeps its adapter when it is unloaded mid-flight,
// and bad adapters are refused with exact codes.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/generate.h"
#include "model/llama_model.h"
#include "model/lora.h"
#include "server/engine.h"
#include "tests/testing/paths.h"
#include "tests/testing/random_lora.h"
#include "tests/testing/status_matchers.h"
#include "train/export.h"

namespace anvil::server {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class AdapterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(testing::F32ModelPath());
    ASSERT_THAT(m, IsOk());
    base_ = std::move(m).value().release();
    // Per process: ctest runs each test of this suite as its own process, in parallel.
    dir_ = new std::string(::testing::TempDir() + "/server_engine_adapter_test_" +
                           std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    // A deterministic random adapter on q, v, gate and down of every layer, rank 4.
    const LoraAdapters lora = testing::RandomLora(base_->config(), 42);
    const LlamaConfig& c = base_->config();
    ASSERT_THAT(train::WriteLoraGguf(lora, base_->file(), *dir_ + "/adapter.gguf"), IsOk());
    ASSERT_THAT(train::WritePeftAdapter(lora, *dir_ + "/peft", "SmolLM2-135M-Instruct", c.n_head,
                                        c.n_head_kv),
                IsOk());
    ASSERT_THAT(train::WriteMergedGguf(base_->file(), &lora, {}, DType::kF32,
                                       *dir_ + "/merged.gguf"),
                IsOk());
    auto merged = LlamaModel::Load(*dir_ + "/merged.gguf");
    ASSERT_THAT(merged, IsOk());
    merged_ = std::move(merged).value().release();
  }
  static void TearDownTestSuite() {
    delete merged_;
    delete base_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static std::vector<int32_t> Chat(const std::string& question) {
    auto text = base_->chat_template()->Render({{"user", question}}, true);
    EXPECT_THAT(text, IsOk());
    return base_->tokenizer().Encode(*text, true, true);
  }
  static std::vector<int32_t> Reference(const LlamaModel& model, const std::vector<int32_t>& p,
                                        int32_t max_tokens) {
    ContextOptions co;
    co.n_ctx = 256;
    auto ctx = Context::Create(model, co);
    EXPECT_THAT(ctx, IsOk());
    GenerateOptions g;
    g.max_tokens = max_tokens;
    g.sampling.temperature = 0;
    auto r = Generate(**ctx, p, g);
    EXPECT_THAT(r, IsOk());
    return r->tokens;
  }
  static Request Greedy(std::vector<int32_t> prompt, int32_t max_tokens, std::string adapter) {
    Request r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    r.adapter = std::move(adapter);
    return r;
  }
  static std::vector<int32_t> Run(Stream& s) {
    Event e;
    while (s.Next(&e)) {
    }
    EXPECT_THAT(s.final().status, IsOk());
    return s.final().tokens;
  }
  std::unique_ptr<Engine> NewEngine() {
    EngineOptions o;
    o.n_ctx = 256;
    o.max_running = 6;
    auto e = Engine::Create(*base_, o);
    EXPECT_THAT(e, IsOk());
    return std::move(e).value();
  }

  static LlamaModel* base_;
  static LlamaModel* merged_;
  static std::string* dir_;
};
LlamaModel* AdapterTest::base_ = nullptr;
LlamaModel* AdapterTest::merged_ = nullptr;
std::string* AdapterTest::dir_ = nullptr;

TEST_F(AdapterTest, AdapterRowsMatchTheMergedModelAndBaseRowsAreUnchanged) {
  auto engine = NewEngine();
  ASSERT_THAT(engine->LoadAdapter("gguf", *dir_ + "/adapter.gguf"), IsOk());
  ASSERT_THAT(engine->LoadAdapter("peft", *dir_ + "/peft"), IsOk());
  EXPECT_THAT(engine->Adapters(), ElementsAre("gguf", "peft"));
  const std::vector<int32_t> p1 = Chat("What is the capital of France?");
  const std::vector<int32_t> p2 = Chat("Name three primary colors.");
  constexpr int32_t kTokens = 10;
  // One batch: base and adapted requests on the same prompts.
  std::vector<Request> reqs = {Greedy(p1, kTokens, ""), Greedy(p1, kTokens, "gguf"),
                               Greedy(p2, kTokens, "peft"), Greedy(p2, kTokens, "")};
  std::vector<std::shared_ptr<Stream>> streams;
  for (const Request& r : reqs) {
    auto s = engine->Submit(r);
    ASSERT_THAT(s, IsOk());
    streams.push_back(*s);
  }
  std::vector<std::vector<int32_t>> got;
  for (auto& s : streams) got.push_back(Run(*s));
  const std::vector<int32_t> base1 = Reference(*base_, p1, kTokens);
  const std::vector<int32_t> base2 = Reference(*base_, p2, kTokens);
  const std::vector<int32_t> merged1 = Reference(*merged_, p1, kTokens);
  const std::vector<int32_t> merged2 = Reference(*merged_, p2, kTokens);
  ASSERT_NE(base1, merged1) << "the test adapter must change the output";
  ASSERT_NE(base2, merged2) << "the test adapter must change the output";
  EXPECT_EQ(got[0], base1);
  EXPECT_EQ(got[1], merged1);
  EXPECT_EQ(got[2], merged2);
  EXPECT_EQ(got[3], base2);
  // The adapter's prompt KV is not shared with base requests of the same prompt.
  EXPECT_EQ(streams[1]->final().cached_prompt_tokens, 0);
}

TEST_F(AdapterTest, RequestKeepsItsAdapterWhenUnloadedMidFlight) {
  auto engine = NewEngine();
  ASSERT_THAT(engine->LoadAdapter("a", *dir_ + "/adapter.gguf"), IsOk());
  const std::vector<int32_t> p = Chat("Name three primary colors.");
  auto s = engine->Submit(Greedy(p, 10, "a"));
  ASSERT_THAT(s, IsOk());
  Event first;
  ASSERT_TRUE((*s)->Next(&first));
  ASSERT_THAT(engine->UnloadAdapter("a"), IsOk());
  EXPECT_TRUE(engine->Adapters().empty());
  EXPECT_THAT(engine->Submit(Greedy(p, 2, "a")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("'a'")));
  Run(**s);
  EXPECT_EQ((*s)->final().tokens, Reference(*merged_, p, 10));
  EXPECT_THAT(engine->UnloadAdapter("a"), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(AdapterTest, BadAdaptersAreRefused) {
  auto engine = NewEngine();
  ASSERT_THAT(engine->LoadAdapter("x", *dir_ + "/adapter.gguf"), IsOk());
  EXPECT_THAT(engine->LoadAdapter("x", *dir_ + "/adapter.gguf"),
              StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_THAT(engine->LoadAdapter("y", *dir_ + "/missing.gguf"),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(engine->LoadAdapter("", *dir_ + "/adapter.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  // A whole model is not an adapter.
  EXPECT_THAT(engine->LoadAdapter("z", testing::Q41ModelPath()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a LoRA adapter")));
  // Garbage bytes.
  const std::string junk = *dir_ + "/junk.gguf";
  std::ofstream(junk) << "not a gguf file at all";
  EXPECT_THAT(engine->LoadAdapter("j", junk), StatusIs(absl::StatusCode::kInvalidArgument));
  // A PEFT directory without its config.
  std::filesystem::create_directories(*dir_ + "/noconfig");
  std::filesystem::copy_file(*dir_ + "/peft/adapter_model.safetensors",
                             *dir_ + "/noconfig/adapter_model.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_THAT(engine->LoadAdapter("n", *dir_ + "/noconfig"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("adapter_config.json")));
  EXPECT_THAT(engine->Adapters(), ElementsAre("x"));
}

}  // namespace
}  // namespace anvil::server
