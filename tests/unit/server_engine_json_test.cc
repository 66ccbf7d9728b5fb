// json_object constrained decoding: the byte-level recognizer agrees with nlohmann::json (an
// independent parser) on complete documents and rejects exactly the bytes that cannot continue
// one JSON object; on the real model, constrained outputs parse as one JSON object.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/llama_model.h"
#include "nlohmann/json.hpp"
#include "server/engine.h"
#include "server/json_constraint.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::server {
namespace {

using ::anvil::testing::IsOk;

// Feeds `text` in pieces of `step` bytes (token boundaries anywhere).
bool FeedAll(JsonPrefix& p, const std::string& text, size_t step) {
  for (size_t i = 0; i < text.size(); i += step) {
    if (!p.Feed(std::string_view(text).substr(i, step))) return false;
  }
  return true;
}

TEST(JsonPrefixTest, CompleteObjectsAgreeWithAnIndependentParser) {
  const std::vector<std::string> docs = {
      R"({})",
      R"(  {"a": 1})",
      R"({"a": [1, -2.5e+3, 0, 0.5, 1E9, true, false, null, "x\u00e9\n\"q\""], "b": {}})",
      "{\"k\": \"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"}",
      R"({"nested": {"deep": [[[]], {"x": [{}]}]}, "n": -0.0e-0})",
      R"({"a": 01})",
      R"({"a" 1})",
      R"({"a": 1,})",
      R"({,})",
      R"([1, 2])",
      R"({"a": tru})",
      R"({"a": "\q"})",
      R"({"a": "\u12G4"})",
      R"({"a": 1.})",
      R"({"a": -})",
      R"({"a": 1e})",
      R"({"a": [1 2]})",
      R"({"a": 1]})",
      R"({'a': 1})",
      "{\"a\": \"tab\there\"}",
      "{\"a\": \"\xC3\x28\"}",
      R"({"a": +1})",
      R"({"a": .5})",
  };
  for (const std::string& d : docs) {
    nlohmann::json j = nlohmann::json::parse(d, nullptr, /*allow_exceptions=*/false);
    const bool valid = !j.is_discarded() && j.is_object();
    for (size_t step : {1u, 2u, 3u, 7u, 100u}) {
      JsonPrefix p;
      const bool fed = FeedAll(p, d, step);
      EXPECT_EQ(fed && p.complete(), valid) << d << " (pieces of " << step << ")";
    }
  }
}

TEST(JsonPrefixTest, PrefixesAndWhatMayFollowThem) {
  JsonPrefix p;
  EXPECT_TRUE(p.Feed(" \n{\"name\": \"Tom\", \"age\": 3"));
  EXPECT_FALSE(p.complete());
  JsonPrefix probe = p;
  EXPECT_TRUE(probe.Feed("5"));  // the number may go on
  probe = p;
  EXPECT_TRUE(probe.Feed(".25e-1}"));
  EXPECT_TRUE(probe.complete());
  EXPECT_FALSE(probe.Feed(" "));  // nothing after the object, not even whitespace
  probe = p;
  EXPECT_FALSE(probe.Feed("]"));
  probe = p;
  EXPECT_FALSE(probe.Feed("x"));
  JsonPrefix empty;
  EXPECT_FALSE(empty.Feed("x{"));
  JsonPrefix arr;
  EXPECT_FALSE(arr.Feed("["));
}

class JsonEngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(testing::Q41ModelPath());
    ASSERT_THAT(m, IsOk());
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() { delete model_; }
  static LlamaModel* model_;
};
LlamaModel* JsonEngineTest::model_ = nullptr;

TEST_F(JsonEngineTest, ConstrainedOutputsParseAsOneObject) {
  EngineOptions o;
  o.n_ctx = 512;
  auto engine = Engine::Create(*model_, o);
  ASSERT_THAT(engine, IsOk());
  auto text = model_->chat_template()->Render(
      {{"user", "Describe a cat as a JSON object with the keys name, age and color."}}, true);
  ASSERT_THAT(text, IsOk());
  const std::vector<int32_t> prompt = model_->tokenizer().Encode(*text, true, true);
  std::vector<std::shared_ptr<Stream>> streams;
  for (int i = 0; i < 3; ++i) {
    Request r;
    r.prompt = prompt;
    r.max_tokens = 80;
    r.json_object = true;
    r.top_logprobs = 0;
    r.sampling.temperature = i == 0 ? 0.0f : 0.7f;
    r.sampling.seed = static_cast<uint64_t>(100 + i);
    auto s = (*engine)->Submit(r);
    ASSERT_THAT(s, IsOk());
    streams.push_back(*s);
  }
  // An unconstrained greedy request beside them is not constrained.
  Request free_req;
  free_req.prompt = prompt;
  free_req.max_tokens = 3;
  free_req.sampling.temperature = 0;
  auto free_stream = (*engine)->Submit(free_req);
  ASSERT_THAT(free_stream, IsOk());
  for (auto& s : streams) {
    std::string streamed;
    Event e;
    while (s->Next(&e)) {
      streamed += e.text;
      EXPECT_LE(e.logprob, 0.0f);
    }
    const Final& f = s->final();
    ASSERT_THAT(f.status, IsOk());
    EXPECT_EQ(f.finish, FinishReason::kStop) << f.text;
    EXPECT_EQ(streamed, f.text);
    nlohmann::json j = nlohmann::json::parse(f.text, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << f.text;
    EXPECT_TRUE(j.is_object()) << f.text;
  }
  Event e;
  while ((*free_stream)->Next(&e)) {
  }
  // The model's own first words are not JSON.
  EXPECT_EQ((*free_stream)->final().text.find('{'), std::string::npos)
      << (*free_stream)->final().text;
}

}  // namespace
}  // namespace anvil::server
