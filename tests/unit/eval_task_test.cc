// Task files and prompts: strict YAML errors (file:line:field), JSONL record errors (file:line),
// seeded few-shot selection, prompt rendering through the chat template, chain-of-thought answer
// extraction, prompt hashes, and hand-checked field-level F1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "eval/field_f1.h"
#include "eval/prompt.h"
#include "eval/task.h"
#include "tests/testing/status_matchers.h"

namespace anvil::eval {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kGood[] = R"(name: ner
kind: generate
data:
  path: data/test.jsonl
  format: chat
prompt:
  name: p1
  strategy: few_shot
  few_shot: {k: 2, pool: data/train.jsonl, seed: 9}
metrics:
  - kind: exact_match
    normalize: json
  - kind: field_f1
generation: {max_tokens: 32}
)";

absl::StatusOr<Task> Parse(const std::string& yaml) { return ParseTask(yaml, "t.yaml", "/base"); }

TEST(EvalTaskTest, ParsesAGoodTask) {
  absl::StatusOr<Task> t = Parse(kGood);
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->kind, TaskKind::kGenerate);
  EXPECT_EQ(t->data.path, "/base/data/test.jsonl");
  EXPECT_EQ(t->data.path_as_written, "data/test.jsonl");
  EXPECT_EQ(t->prompt.strategy, PromptStrategy::kFewShot);
  EXPECT_EQ(t->prompt.few_shot.k, 2);
  EXPECT_EQ(t->prompt.few_shot.seed, 9u);
  EXPECT_EQ(t->prompt.few_shot.pool, "/base/data/train.jsonl");
  ASSERT_EQ(t->metrics.size(), 2u);
  EXPECT_EQ(t->metrics[0].name, "exact_match_json");
  EXPECT_EQ(t->metrics[1].name, "field_f1");
  EXPECT_EQ(t->generation.max_tokens, 32);
  EXPECT_EQ(t->generation.temperature, 0.0);  // greedy unless asked
}

TEST(EvalTaskTest, ErrorsNameFileLineAndField) {
  std::string yaml = kGood;
  yaml.replace(yaml.find("strategy: few_shot"), 18, "stratgy: few_shot");
  EXPECT_THAT(Parse(yaml), StatusIs(absl::StatusCode::kInvalidArgument,
                                    HasSubstr("t.yaml:8:3: prompt.stratgy: unknown field (did "
                                              "you mean \"strategy\"?)")));
  EXPECT_THAT(Parse("name: x\nkind: generat\ndata: {path: a.jsonl}\nmetrics: [{kind: bleu}]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml:2:7: kind: expected one of generate, multiple_choice, "
                                 "perplexity")));
  EXPECT_THAT(Parse("name: x\nkind: generate\ndata: {path: a.jsonl}\nmetrics:\n"
                    "  - kind: exact_match\n    normalize: jsn\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml:6:5: metrics[0].normalize: unknown normalization \"jsn\"")));
  EXPECT_THAT(Parse("name: x\nkind: generate\ndata: {path: a.jsonl}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.yaml: metrics: missing")));
  EXPECT_THAT(Parse("name: x\nkind: generate\ndata: {path: a.jsonl}\nmetrics: [{kind: bleu}]\n"
                    "generation: {max_tokens: -3}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml:5:26: generation.max_tokens: must be in [1, 65536]")));
  EXPECT_THAT(Parse("name: x\nkind: generate\ndata: {path: a.jsonl}\nmetrics: [{kind: bleu}]\n"
                    "prompt:\n  chain_of_thought: {regex: \"(a\"}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("prompt.chain_of_thought.regex: not a valid regular expression")));
  EXPECT_THAT(Parse("name: x\nkind: perplexity\ndata: {path: a.txt}\nmetrics: [{kind: bleu}]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml:4:1: metrics: only for kind generate")));
  EXPECT_THAT(Parse("name: x\nkind: generate\ndata: {path: a.jsonl}\nmetrics: [{kind: bleu}]\n"
                    "prompt: {user: \"Q: {question\"}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prompt.user: '{' at")));
  EXPECT_THAT(ParseTask("name: [", "t.yaml", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("t.yaml:1:")));
  EXPECT_THAT(LoadTask("/nonexistent/task.yaml"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(EvalTaskTest, RecordErrorsNameFileAndLine) {
  DataSpec mc;
  const std::string text =
      "{\"q\": \"1+1\", \"choices\": [\"2\", \"3\"], \"answer\": 0}\n"
      "not json\n"
      "{\"q\": \"2+2\", \"choices\": [\"4\", \"5\", \"6\"], \"answer\": 4}\n"
      "{\"q\": \"3+3\", \"choices\": [\"6\", \"7\"], \"answer\": \"8\"}\n"
      "{\"choices\": [\"6\", \"7\"], \"answer\": 0}\n";
  auto r = ParseExamples(text, "mc.jsonl", mc, TaskKind::kMultipleChoice, "What is {q}?");
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("mc.jsonl:2: not a JSON object")));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("mc.jsonl:3: answer: 4 is out of range for 3 choices")));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("mc.jsonl:4: answer: \"8\" is none of the choices")));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("mc.jsonl:5: q: missing (prompt.user uses {q})")));
  auto good = ParseExamples(text.substr(0, text.find('\n') + 1), "mc.jsonl", mc,
                            TaskKind::kMultipleChoice, "What is {q}?");
  ASSERT_THAT(good, IsOk());
  EXPECT_EQ((*good)[0].reference, "2");
  EXPECT_EQ((*good)[0].id, "1");

  DataSpec chat;
  chat.format = DataFormat::kChat;
  EXPECT_THAT(ParseExamples("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
                            "c.jsonl", chat, TaskKind::kGenerate, "{input}"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("c.jsonl:1: messages: must end with a user turn and the "
                                 "assistant's answer")));
}

TEST(EvalTaskTest, FewShotSelectionIsSeededAndDeterministic) {
  const std::vector<size_t> a = SelectFewShot(100, 3, 42, 7, {});
  EXPECT_EQ(a, SelectFewShot(100, 3, 42, 7, {}));
  EXPECT_EQ(a.size(), 3u);
  EXPECT_NE(a, SelectFewShot(100, 3, 43, 7, {}));
  EXPECT_NE(a, SelectFewShot(100, 3, 42, 8, {}));
  for (size_t i = 0; i < 50; ++i) {
    const std::vector<size_t> s = SelectFewShot(5, 4, 1, i, {2});
    EXPECT_EQ(s.size(), 4u);
    EXPECT_EQ(std::count(s.begin(), s.end(), 2u), 0);
  }
  EXPECT_EQ(SelectFewShot(3, 5, 1, 0, {0}).size(), 2u);
}

std::vector<Example> ChatExamples() {
  DataSpec chat;
  chat.format = DataFormat::kChat;
  std::string text;
  for (int i = 0; i < 6; ++i) {
    text += "{\"messages\": [{\"role\": \"user\", \"content\": \"q" + std::to_string(i) +
            "\"}, {\"role\": \"assistant\", \"content\": \"a" + std::to_string(i) + "\"}]}\n";
  }
  return *ParseExamples(text, "c.jsonl", chat, TaskKind::kGenerate, "{input}");
}

TEST(EvalPromptTest, ZeroShotRendersAsTheChatTemplateDoes) {
  const std::vector<Example> data = ChatExamples();
  const ChatTemplate tmpl = ChatTemplate::ForFamily(ChatFamily::kChatML);
  PromptSpec spec;
  PromptBuilder zero(spec, PromptStrategy::kZeroShot, &data);
  const std::vector<ChatMessage> want = {{"user", "q3"}};
  EXPECT_EQ(*zero.Render(tmpl, data[3], 3), *tmpl.Render(want, true));
  spec.system = "Be brief.";
  spec.user = "Question: {input}";
  PromptBuilder with_system(spec, PromptStrategy::kZeroShot, &data);
  const std::vector<ChatMessage> want2 = {{"system", "Be brief."}, {"user", "Question: q3"}};
  EXPECT_EQ(*with_system.Render(tmpl, data[3], 3), *tmpl.Render(want2, true));
}

TEST(EvalPromptTest, FewShotTurnsComeFromThePoolNeverTheRecordItself) {
  const std::vector<Example> data = ChatExamples();
  PromptSpec spec;
  spec.few_shot.k = 5;
  PromptBuilder few(spec, PromptStrategy::kFewShot, &data);
  auto m = few.Messages(data[2], 2);
  ASSERT_THAT(m, IsOk());
  ASSERT_EQ(m->size(), 11u);  // 5 examples x 2 turns + the question
  for (size_t i = 0; i + 1 < m->size(); i += 2) {
    EXPECT_EQ((*m)[i].role, "user");
    EXPECT_NE((*m)[i].content, "q2");
    EXPECT_EQ((*m)[i + 1].content, "a" + (*m)[i].content.substr(1));
  }
  EXPECT_EQ(m->back().content, "q2");
  spec.few_shot.k = 2;
  spec.few_shot.multi_turn = false;
  PromptBuilder inlined(spec, PromptStrategy::kFewShot, &data);
  auto one = inlined.Messages(data[2], 2);
  ASSERT_THAT(one, IsOk());
  ASSERT_EQ(one->size(), 1u);
  EXPECT_THAT(one->back().content, HasSubstr("\n\nq2"));
}

TEST(EvalPromptTest, HashVersionsThePrompt) {
  const std::vector<Example> data = ChatExamples();
  PromptSpec spec;
  const std::string h0 = PromptBuilder(spec, PromptStrategy::kZeroShot, &data).hash();
  EXPECT_EQ(h0.size(), 64u);
  EXPECT_EQ(h0, PromptBuilder(spec, PromptStrategy::kZeroShot, &data).hash());
  EXPECT_NE(h0, PromptBuilder(spec, PromptStrategy::kChainOfThought, &data).hash());
  spec.user = "{input}?";
  EXPECT_NE(h0, PromptBuilder(spec, PromptStrategy::kZeroShot, &data).hash());
}

TEST(EvalPromptTest, ChainOfThoughtExtraction) {
  ChainOfThoughtSpec marker;
  EXPECT_EQ(ExtractAnswer("Answer: no\nthinking\nAnswer:  42 \nbye", marker), "42");
  EXPECT_EQ(ExtractAnswer("no marker", marker), std::nullopt);
  ChainOfThoughtSpec re;
  re.regex = "Answer:\\s*(\\{[^\\n]*\\})";
  EXPECT_EQ(ExtractAnswer("x\nAnswer: {\"a\": [1]} done", re), "{\"a\": [1]}");
  EXPECT_EQ(ExtractAnswer("Answer: {\"a\": 1}\nAnswer: {\"a\": 2}", re), "{\"a\": 2}");
  EXPECT_EQ(ExtractAnswer("Answer: none", re), std::nullopt);
}

TEST(EvalPromptTest, FillTemplate) {
  EXPECT_EQ(*FillTemplate("{{x}} {a}-{b}", {{"a", "1"}, {"b", "2"}}), "{x} 1-2");
  EXPECT_THAT(FillTemplate("{c}", {{"a", "1"}}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(*TemplateVariables("{a} {{b}} {c}"), ElementsAre("a", "c"));
}

TEST(EvalFieldF1Test, HandCheckedCases) {
  const std::string ref = R"({"people": ["Ana Silva", "Bruno"], "places": ["Oslo"]})";
  // 2 of 3 predicted values are right, 2 of 3 expected values were found.
  auto r = FieldF1(R"({"places": ["Oslo", "Lima"], "people": ["Ana Silva"]})", ref);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->matched, 2);
  EXPECT_EQ(r->predicted, 3);
  EXPECT_EQ(r->expected, 3);
  EXPECT_DOUBLE_EQ(r->precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(r->recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(r->f1, 2.0 / 3);
  // A value under the wrong key does not count; order and duplicates do not matter.
  r = FieldF1(R"({"people": ["Bruno", "Oslo", "Bruno"], "places": []})", ref);
  EXPECT_DOUBLE_EQ(r->precision, 0.5);
  EXPECT_DOUBLE_EQ(r->recall, 1.0 / 3);
  EXPECT_DOUBLE_EQ(r->f1, 0.4);
  // Perfect, empty-vs-empty, and a prediction that is not JSON.
  EXPECT_DOUBLE_EQ(FieldF1(ref, ref)->f1, 1.0);
  EXPECT_DOUBLE_EQ(FieldF1(R"({"people": []})", R"({"people": [], "places": []})")->f1, 1.0);
  EXPECT_DOUBLE_EQ(FieldF1(R"({"people": ["X"]})", R"({"people": []})")->precision, 0.0);
  EXPECT_DOUBLE_EQ(FieldF1("people: Ana", ref)->f1, 0.0);
  EXPECT_THAT(FieldF1(ref, "not json"), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil::eval
