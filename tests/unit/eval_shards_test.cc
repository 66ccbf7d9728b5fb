// Sharded evaluation: a task split over N shards (HarnessOptions::shard/num_shards) and merged
// back (eval/shards.h) gives the unsharded run's result file byte for byte, for generation,
// multiple-choice and perplexity tasks and for more shards than records; shard documents
// round-trip exactly and malformed ones are refused naming the field.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "eval/harness.h"
#include "eval/shards.h"
#include "model/tiny_model.h"
#include "tests/testing/status_matchers.h"

namespace anvil::eval {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

class EvalShardsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/eval_shards_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    ASSERT_THAT(WriteTinyLlamaGguf(TinyModelConfig{}, *dir_ + "/tiny.gguf"), IsOk());
    auto m = LlamaModel::Load(*dir_ + "/tiny.gguf");
    ASSERT_THAT(m, IsOk());
    model_ = std::move(m).value().release();
    std::ofstream gen(*dir_ + "/qa.jsonl");
    const char* words[] = {"cat", "house", "then", "tree", "sun", "river", "stone"};
    for (int i = 0; i < 7; ++i) {
      gen << "{\"question\": \"the " << words[i] << "\", \"answer\": \"" << words[(i * 3) % 7]
          << " " << words[i] << "\"}\n";
    }
    std::ofstream mc(*dir_ + "/mc.jsonl");
    for (int i = 0; i < 5; ++i) {
      mc << "{\"id\": \"q" << i << "\", \"question\": \"" << i << " + " << i
         << "\", \"choices\": [\"" << 2 * i << "\", \"" << 2 * i + 1 << "\", \"" << i << "\"], "
         << "\"answer\": " << i % 3 << "}\n";
    }
    std::ofstream text(*dir_ + "/text.txt");
    for (int i = 0; i < 40; ++i) text << "the cat sat in the house by the river. ";
  }
  static void TearDownTestSuite() {
    delete model_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static absl::StatusOr<Task> TaskFile(const std::string& name, const std::string& yaml) {
    std::ofstream(*dir_ + "/" + name) << yaml;
    return LoadTask(*dir_ + "/" + name);
  }

  // Runs `task` in one piece and in `n` shards (serialized and parsed, as eval jobs send them,
  // merged in a scrambled order); returns both result files.
  static std::pair<std::string, std::string> WholeAndSharded(const Task& task, int n,
                                                             HarnessOptions opts = {}) {
    opts.model_name = "tiny";
    auto whole = RunTask(*model_, task, opts);
    EXPECT_THAT(whole, IsOk());
    std::vector<Shard> shards;
    for (int s = n - 1; s >= 0; --s) {
      HarnessOptions o = opts;
      o.shard = s;
      o.num_shards = n;
      auto part = RunTask(*model_, task, o);
      EXPECT_THAT(part, IsOk());
      if (!part.ok()) return {};
      EXPECT_EQ(part->metrics.empty(), n > 1);
      auto parsed = ParseShard("test", SerializeShard(*part, s, n));
      EXPECT_THAT(parsed, IsOk());
      if (!parsed.ok()) return {};
      shards.push_back(*std::move(parsed));
    }
    auto merged = MergeShards(std::move(shards), opts.bootstrap);
    EXPECT_THAT(merged, IsOk());
    if (!whole.ok() || !merged.ok()) return {};
    return {ResultsJson(*whole), ResultsJson(*merged)};
  }

  static std::string* dir_;
  static LlamaModel* model_;
};
std::string* EvalShardsTest::dir_ = nullptr;
LlamaModel* EvalShardsTest::model_ = nullptr;

TEST_F(EvalShardsTest, GenerationShardsMergeToTheUnshardedResultFile) {
  auto task = TaskFile("qa.yaml", R"(name: qa
kind: generate
data: {path: qa.jsonl, reference: answer}
prompt: {user: "Repeat: {question}", few_shot: {k: 2}}
metrics: [{kind: exact_match}, {kind: token_f1}, {kind: rouge_l}, {kind: chrf}]
generation: {max_tokens: 6, temperature: 0.7, seed: 11}
)");
  ASSERT_THAT(task, IsOk());
  for (int n : {1, 2, 3, 7, 9}) {
    auto [whole, merged] = WholeAndSharded(*task, n);
    EXPECT_FALSE(whole.empty());
    EXPECT_EQ(whole, merged) << n << " shards";
  }
  HarnessOptions few;
  few.strategy = PromptStrategy::kFewShot;
  few.limit = 5;
  auto [whole, merged] = WholeAndSharded(*task, 2, few);
  EXPECT_THAT(whole, HasSubstr("\"strategy\": \"few_shot\""));
  EXPECT_EQ(whole, merged);
}

TEST_F(EvalShardsTest, MultipleChoiceAndPerplexityShardsMerge) {
  auto mc = TaskFile("mc.yaml", R"(name: mc
kind: multiple_choice
data: {path: mc.jsonl, id: id}
prompt: {user: "What is {question}?"}
)");
  ASSERT_THAT(mc, IsOk());
  auto [whole, merged] = WholeAndSharded(*mc, 2);
  EXPECT_THAT(whole, HasSubstr("\"loglikelihoods\""));
  EXPECT_EQ(whole, merged);
  auto ppl = TaskFile("ppl.yaml", R"(name: ppl
kind: perplexity
data: {path: text.txt, format: text}
perplexity: {ctx: 32, chunks: 3}
)");
  ASSERT_THAT(ppl, IsOk());
  auto [pwhole, pmerged] = WholeAndSharded(*ppl, 3);
  EXPECT_THAT(pwhole, HasSubstr("\"perplexity\": {\"ppl\": "));
  EXPECT_EQ(pwhole, pmerged);
}

// pass@1 through the harness: the check command sees the record's fields ({want} here) and its
// exit status is the score, so the mean is known without knowing what the model writes.
TEST_F(EvalShardsTest, PassAt1IsScoredByTheCheckCommandAndShards) {
  std::ofstream(*dir_ + "/code.jsonl") << "{\"q\": \"a\", \"want\": \"yes\"}\n"
                                          "{\"q\": \"b\", \"want\": \"\"}\n"
                                          "{\"q\": \"c\", \"want\": \"yes\"}\n"
                                          "{\"q\": \"d\", \"want\": \"yes\"}\n";
  auto task = TaskFile("code.yaml", R"(name: code
kind: generate
data: {path: code.jsonl, reference: want}
prompt: {user: "Write {q}"}
metrics:
  - kind: pass_at_1
    check: {command: [sh, -c, "test -f {answer_file} && test -n '{want}'"], timeout_s: 10}
generation: {max_tokens: 4}
)");
  ASSERT_THAT(task, IsOk());
  HarnessOptions opts;
  auto r = RunTask(*model_, *task, opts);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->metrics.size(), 1u);
  EXPECT_EQ(r->metrics[0].name, "pass_at_1");
  ASSERT_EQ(r->examples.size(), 4u);
  EXPECT_EQ(r->examples[1].scores[0].second, 0.0);
  EXPECT_EQ(r->metrics[0].ci.mean, 0.75);
  auto [whole, merged] = WholeAndSharded(*task, 3);
  EXPECT_EQ(whole, merged);
}

TEST_F(EvalShardsTest, ShardOptionsOutOfRangeAreInvalid) {
  auto mc = TaskFile("mc2.yaml", "name: mc\nkind: multiple_choice\ndata: {path: mc.jsonl}\n"
                                 "prompt: {user: \"{question}\"}\n");
  ASSERT_THAT(mc, IsOk());
  HarnessOptions o;
  o.shard = 2;
  o.num_shards = 2;
  EXPECT_THAT(RunTask(*model_, *mc, o), StatusIs(absl::StatusCode::kInvalidArgument,
                                                 HasSubstr("shard 2 is not in [0, 2)")));
}

TEST(EvalShardDocuments, RoundTripKeepsEveryBit) {
  TaskResult r;
  r.task_name = "t";
  r.kind = "generate";
  r.seed = 18446744073709551615ull;
  r.temperature = 0.1;
  ExampleResult e;
  e.id = "x\n\"y\" \xc3\xa9";
  e.prediction = "{\"a\": 1}";
  e.scores = {{"token_f1", 2.0 / 3.0}, {"chrf", 0.1 + 0.2}};
  e.loglikelihoods = {-1e-300, -123.456789012345678};
  r.examples = {e};
  auto back = ParseShard("s", SerializeShard(r, 1, 2));
  ASSERT_THAT(back, IsOk());
  EXPECT_EQ(back->shard, 1);
  EXPECT_EQ(back->num_shards, 2);
  ASSERT_EQ(back->result.examples.size(), 1u);
  const ExampleResult& b = back->result.examples[0];
  EXPECT_EQ(b.id, e.id);
  EXPECT_EQ(b.prediction, e.prediction);
  EXPECT_EQ(b.scores, e.scores);  // bitwise-equal doubles
  EXPECT_EQ(b.loglikelihoods, e.loglikelihoods);
  EXPECT_EQ(back->result.seed, r.seed);
  EXPECT_EQ(back->result.temperature, r.temperature);
}

TEST(EvalShardDocuments, MalformedDocumentsNameTheField) {
  const std::string good = SerializeShard(TaskResult{}, 0, 1);
  struct Case {
    std::string text, message;
  } cases[] = {
      {"not json", "s: (document): not valid JSON"},
      {"{\"format\": \"other\"}", "s: format: expected anvil-eval-shard/1"},
      {"[]", "s: : expected an object"},
      {std::string(good).replace(good.find("\"shard\":0"), 9, "\"shard\":5"), "s: shard: 5 of 1"},
      {std::string(good).replace(good.find("\"num_shards\":1"), 14, "\"num_shards\":\"1\""),
       "s: num_shards: expected number"},
      {std::string(good).replace(good.find("\"model\":\"\""), 10, "\"model\":3"),
       "s: header.model: expected string, got number"},
      {std::string(good).replace(good.find("\"examples\":[]"), 13, "\"examples\":[{\"id\":1}]"),
       "s: examples[0].id: expected string"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseShard("s", c.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.text;
  }
}

TEST(EvalShardDocuments, MergeRefusesMissingRepeatedAndForeignShards) {
  auto shard = [](int s, int n, int examples, const std::string& task) {
    Shard out{s, n, {}};
    out.result.task_name = task;
    out.result.examples.resize(static_cast<size_t>(examples));
    for (auto& e : out.result.examples) e.scores = {{"exact_match", 1.0}};
    return out;
  };
  EXPECT_THAT(MergeShards({}, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(MergeShards({shard(0, 2, 1, "t")}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected each of 0..0")));
  EXPECT_THAT(MergeShards({shard(0, 2, 1, "t"), shard(0, 2, 1, "t")}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("got shard 0 of 2")));
  EXPECT_THAT(MergeShards({shard(0, 2, 1, "t"), shard(1, 2, 1, "u")}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("from another run")));
  EXPECT_THAT(MergeShards({shard(0, 2, 1, "t"), shard(1, 2, 3, "t")}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("shard 0 has 1 examples; 2")));
  auto ok = MergeShards({shard(1, 2, 2, "t"), shard(0, 2, 3, "t")}, {});
  ASSERT_THAT(ok, IsOk());
  EXPECT_EQ(ok->examples.size(), 5u);
  ASSERT_EQ(ok->metrics.size(), 1u);
  EXPECT_EQ(ok->metrics[0].ci.mean, 1.0);
}

}  // namespace
}  // namespace anvil::eval
