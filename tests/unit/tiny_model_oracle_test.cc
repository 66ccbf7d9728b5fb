// Tiny random models written by our GGUF writer, run by our forward pass and by llama.cpp
// (tests/fixtures/tiny_model.json): same bytes as the oracle loaded, same logits at every
// position, same greedy continuation; and the reference and CPU backends agree.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/llama_model.h"
#include "model/sampler.h"
#include "model/tiny_model.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/sha256.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using json = nlohmann::json;
using ::anvil::testing::IsOk;

struct Loaded {
  std::string bytes;  // must outlive the model
  std::unique_ptr<LlamaModel> model;
};

std::unique_ptr<Loaded> Load(const TinyModelConfig& cfg) {
  auto out = std::make_unique<Loaded>();
  auto bytes = MakeTinyLlamaGguf(cfg);
  EXPECT_THAT(bytes, IsOk());
  out->bytes = *std::move(bytes);
  auto file = gguf::GgufFile::FromBuffer(
      "tiny.gguf", {reinterpret_cast<const uint8_t*>(out->bytes.data()), out->bytes.size()});
  EXPECT_THAT(file, IsOk());
  auto model = LlamaModel::FromFile(std::move(file).value());
  EXPECT_THAT(model, IsOk());
  out->model = std::move(model).value();
  return out;
}

TinyModelConfig ConfigFromArgs(const std::vector<std::string>& args) {
  TinyModelConfig cfg;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--f32") cfg.all_f32 = true;
    if (args[i] == "--untied") cfg.tied_embeddings = false;
    if (args[i] == "--seed") cfg.seed = std::stoull(args[++i]);
  }
  return cfg;
}

std::vector<float> RunAll(const LlamaModel& m, const std::vector<int32_t>& ids, Backend backend) {
  ContextOptions o;
  o.n_ctx = 64;
  o.backend = backend;
  auto ctx = Context::Create(m, o);
  EXPECT_THAT(ctx, IsOk());
  EXPECT_THAT((*ctx)->Eval(ids, LogitsRequest::All()), IsOk());
  return std::vector<float>((*ctx)->logits(0), (*ctx)->logits(0) + ids.size() * m.config().n_vocab);
}

class TinyOracleTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TinyOracleTest, MatchesLlamaCpp) {
  const json fx = json::parse(testing::ReadFileOrDie(testing::FixturePath("tiny_model.json")));
  const json& v = fx["variants"][GetParam()];
  const TinyModelConfig cfg = ConfigFromArgs(v["args"].get<std::vector<std::string>>());
  auto loaded = Load(cfg);
  ASSERT_NE(loaded->model, nullptr);
  ASSERT_EQ(testing::Sha256Hex(loaded->bytes), v["sha256"].get<std::string>())
      << "the tiny-model generator changed: rerun scripts/reference/llamacpp_golden.sh --only tiny";
  const LlamaModel& m = *loaded->model;
  ASSERT_EQ(m.config().n_vocab, v["n_vocab"].get<int64_t>());
  // The fixture prints 6 significant digits; both backends reproduce llama.cpp's numerics,
  // quantized activations included.
  const double tol = 1e-4;
  for (const json& seq : v["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int32_t>>();
    for (Backend backend : {Backend::kReference, Backend::kCpu}) {
    const std::vector<float> got = RunAll(m, ids, backend);
    double worst = 0;
    size_t worst_at = 0;
    for (size_t t = 0; t < ids.size(); ++t) {
      for (size_t i = 0; i < seq["logits"][t].size(); ++i) {
        const double d = std::fabs(got[t * m.config().n_vocab + i] - seq["logits"][t][i].get<double>());
        if (d > worst) {
          worst = d;
          worst_at = t * m.config().n_vocab + i;
        }
      }
    }
    std::printf("  %s, %s, %zu tokens: max |logit - llama.cpp| = %.2e at flat index %zu\n",
                GetParam().c_str(), BackendName(backend), ids.size(), worst, worst_at);
    EXPECT_LE(worst, tol) << BackendName(backend);
    }

    // Greedy continuation.
    ContextOptions o;
    o.n_ctx = 64;
    auto ctx = Context::Create(m, o);
    ASSERT_THAT(ctx, IsOk());
    ASSERT_THAT((*ctx)->Eval(ids), IsOk());
    std::vector<int32_t> greedy;
    const auto want = seq["greedy16"].get<std::vector<int32_t>>();
    for (size_t i = 0; i < want.size(); ++i) {
      int32_t id = Sampler::Argmax((*ctx)->logits(0), m.config().n_vocab);
      greedy.push_back(id);
      if (i + 1 < want.size()) {
        ASSERT_THAT((*ctx)->Eval({&id, 1}), IsOk());
      }
    }
    EXPECT_EQ(greedy, want);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, TinyOracleTest, ::testing::Values("mixed", "f32", "untied"));

TEST(TinyBackendsTest, ReferenceAndCpuAgree) {
  auto loaded = Load(TinyModelConfig{});
  ASSERT_NE(loaded->model, nullptr);
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 37 + 11) % 300);
  const std::vector<float> ref = RunAll(*loaded->model, ids, Backend::kReference);
  const std::vector<float> cpu = RunAll(*loaded->model, ids, Backend::kCpu);
  ASSERT_EQ(ref.size(), cpu.size());
  double worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, double(std::fabs(ref[i] - cpu[i])));
  std::printf("  reference vs cpu backend: max |diff| = %.2e\n", worst);
  EXPECT_LE(worst, 1e-3);
}

}  // namespace
}  // namespace anvil
