// The harness end to end: a generation task and a multiple-choice task on the tiny deterministic
// model give byte-identical result files when run twice; the perplexity task on the real Q4_1
// model reproduces `anvil perplexity`'s 18.2268 (skipped without the model file).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_format.h"
#include "eval/harness.h"
#include "model/tiny_model.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::eval {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

class EvalHarnessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/eval_harness_test_" +
                           std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    const std::string path = *dir_ + "/tiny.gguf";
    ASSERT_THAT(WriteTinyLlamaGguf(TinyModelConfig{}, path), IsOk());
    auto m = LlamaModel::Load(path);
    ASSERT_THAT(m, IsOk());
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() {
    delete model_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  // Writes `text` to a file in the test directory and returns its path.
  static std::string Write(const std::string& name, const std::string& text) {
    const std::string path = *dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
  static absl::StatusOr<Task> TaskFile(const std::string& name, const std::string& yaml) {
    return LoadTask(Write(name, yaml));
  }

  static std::string* dir_;
  static LlamaModel* model_;
};
std::string* EvalHarnessTest::dir_ = nullptr;
LlamaModel* EvalHarnessTest::model_ = nullptr;

TEST_F(EvalHarnessTest, GenerationTaskIsByteIdenticalAcrossRuns) {
  Write("qa.jsonl",
        "{\"question\": \"the cat\", \"answer\": \"{\\\"a\\\": [\\\"cat\\\"]}\"}\n"
        "{\"question\": \"in the house\", \"answer\": \"house\"}\n"
        "{\"question\": \"and then\", \"answer\": \"then\"}\n");
  auto task = TaskFile("qa.yaml", R"(name: qa
kind: generate
data: {path: qa.jsonl, reference: answer}
prompt:
  name: qa-v1
  system: Answer briefly.
  user: "Repeat: {question}"
  few_shot: {k: 2}
  chain_of_thought: {max_tokens: 8}
metrics:
  - {kind: exact_match}
  - {kind: token_f1}
  - {kind: rouge_l}
  - {kind: chrf}
  - {kind: bleu}
generation: {max_tokens: 6}
)");
  ASSERT_THAT(task, IsOk());
  HarnessOptions opts;
  opts.model_name = "tiny";
  auto a = RunTask(*model_, *task, opts);
  ASSERT_THAT(a, IsOk());
  auto b = RunTask(*model_, *task, opts);
  ASSERT_THAT(b, IsOk());
  const std::string json = ResultsJson(*a);
  EXPECT_EQ(json, ResultsJson(*b));
  ASSERT_EQ(a->examples.size(), 3u);
  ASSERT_EQ(a->metrics.size(), 5u);
  EXPECT_EQ(a->metrics[0].name, "exact_match");
  EXPECT_EQ(a->metrics[4].name, "bleu");
  EXPECT_THAT(json, HasSubstr("\"prompt\": {\"name\": \"qa-v1\", \"strategy\": \"zero_shot\""));
  EXPECT_THAT(json, HasSubstr("\"generation\": {\"max_tokens\": 6, \"temperature\": 0.000000"));
  EXPECT_THAT(json, HasSubstr("\"data\": {\"file\": \"qa.jsonl\""));

  // --limit and the few-shot and chain-of-thought strategies run too; the prompt hash follows.
  opts.limit = 2;
  opts.strategy = PromptStrategy::kFewShot;
  auto few = RunTask(*model_, *task, opts);
  ASSERT_THAT(few, IsOk());
  EXPECT_EQ(few->examples.size(), 2u);
  EXPECT_NE(few->prompt_hash, a->prompt_hash);
  opts.strategy = PromptStrategy::kChainOfThought;
  auto cot = RunTask(*model_, *task, opts);
  ASSERT_THAT(cot, IsOk());
  EXPECT_EQ(cot->strategy, "chain_of_thought");
  EXPECT_EQ(cot->max_tokens, 8);
}

TEST_F(EvalHarnessTest, MultipleChoiceTaskIsByteIdenticalAcrossRuns) {
  Write("mc.jsonl",
        "{\"id\": \"a\", \"question\": \"2 + 2\", \"choices\": [\"4\", \"5\", \"22\"], "
        "\"answer\": 0}\n"
        "{\"id\": \"b\", \"question\": \"the\", \"choices\": [\"cat\", \"house\"], "
        "\"answer\": \"house\"}\n");
  auto task = TaskFile("mc.yaml", R"(name: mc
kind: multiple_choice
data: {path: mc.jsonl, id: id}
prompt: {user: "What is {question}?"}
)");
  ASSERT_THAT(task, IsOk());
  HarnessOptions opts;
  auto a = RunTask(*model_, *task, opts);
  ASSERT_THAT(a, IsOk());
  auto b = RunTask(*model_, *task, opts);
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(ResultsJson(*a), ResultsJson(*b));
  ASSERT_EQ(a->metrics.size(), 2u);
  EXPECT_EQ(a->metrics[0].name, "acc");
  EXPECT_EQ(a->metrics[1].name, "acc_norm");
  ASSERT_EQ(a->examples.size(), 2u);
  EXPECT_EQ(a->examples[0].id, "a");
  EXPECT_EQ(a->examples[1].reference, "house");
  ASSERT_EQ(a->examples[0].loglikelihoods.size(), 3u);
  for (double ll : a->examples[0].loglikelihoods) EXPECT_LT(ll, 0.0);
  // acc picks the highest log-likelihood.
  const auto& ll = a->examples[0].loglikelihoods;
  const size_t pick = std::max_element(ll.begin(), ll.end()) - ll.begin();
  EXPECT_EQ(a->examples[0].scores[0].second, pick == 0 ? 1.0 : 0.0);
}

TEST_F(EvalHarnessTest, BadRecordsAndMissingFilesAreReported) {
  Write("bad.jsonl", "{\"question\": \"x\"}\n");
  auto task = TaskFile("bad.yaml", "name: b\nkind: generate\ndata: {path: bad.jsonl}\n"
                                   "prompt: {user: \"{question}\"}\nmetrics: [{kind: bleu}]\n");
  ASSERT_THAT(task, IsOk());
  EXPECT_THAT(RunTask(*model_, *task, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bad.jsonl:1: answer: missing")));
  task->data.path = *dir_ + "/none.jsonl";
  EXPECT_THAT(RunTask(*model_, *task, {}), StatusIs(absl::StatusCode::kNotFound));
}

TEST(EvalRealModelTest, PerplexityTaskReproducesAnvilPerplexity) {
  if (!std::filesystem::exists(testing::Q41ModelPath())) {
    GTEST_SKIP() << "needs " << testing::Q41ModelPath() << " (scripts/fetch-model.sh)";
  }
  if (!std::filesystem::exists("/usr/share/common-licenses/GPL-3")) {
    GTEST_SKIP() << "needs /usr/share/common-licenses/GPL-3";
  }
  auto task = LoadTask(std::string(ANVIL_SOURCE_DIR) + "/tasks/perplexity-gpl.yaml");
  ASSERT_THAT(task, IsOk());
  auto model = LlamaModel::Load(testing::Q41ModelPath());
  ASSERT_THAT(model, IsOk());
  auto r = RunTask(**model, *task, {});
  ASSERT_THAT(r, IsOk());
  ASSERT_TRUE(r->perplexity.has_value());
  EXPECT_EQ(absl::StrFormat("%.4f", r->perplexity->ppl), "18.2268");
  EXPECT_EQ(r->perplexity->chunks, 4);
  EXPECT_THAT(ResultsJson(*r), HasSubstr("\"ppl\": 18.22678"));
}

}  // namespace
}  // namespace anvil::eval
