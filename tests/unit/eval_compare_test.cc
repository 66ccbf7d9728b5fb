// Tests for eval/compare.h: loading result files (and rejecting bad ones by file and field), the
// comparison table cells, best marks and flips, and the table, Markdown, JSON and HTML output.
// The result files are small hand-written "anvil-eval-results/1" documents.
#include "eval/compare.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "eval/harness.h"
#include "tests/testing/status_matchers.h"

namespace anvil::eval {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// Baseline: q1 and q4 right on exact match.
constexpr char kBaseline[] = R"({
  "format": "anvil-eval-results/1",
  "task": {"name": "qa", "file": "qa.yaml", "kind": "generate"},
  "data": {"file": "qa.jsonl", "sha256": "abc", "examples": 4},
  "model": "m1",
  "prompt": {"name": "qa", "strategy": "zero_shot", "sha256": "p1"},
  "metrics": {
    "exact_match": {"mean": 0.500000, "ci95_low": 0.000000, "ci95_high": 1.000000, "n": 4},
    "token_f1": {"mean": 0.600000, "ci95_low": 0.300000, "ci95_high": 0.900000, "n": 4}
  },
  "examples": [
    {"id": "q1", "prediction": "a", "reference": "a",
      "scores": {"exact_match": 1.0, "token_f1": 1.0}},
    {"id": "q2", "prediction": "b", "reference": "c",
      "scores": {"exact_match": 0.0, "token_f1": 0.2}},
    {"id": "q3", "prediction": "x", "reference": "d",
      "scores": {"exact_match": 0.0, "token_f1": 0.4}},
    {"id": "q4", "prediction": "e", "reference": "e",
      "scores": {"exact_match": 1.0, "token_f1": 0.8}}
  ]
}
)";

// q1 lost (with a prediction the HTML must escape), q2 and q3 gained, q4 unchanged.
constexpr char kOther[] = R"({
  "format": "anvil-eval-results/1",
  "task": {"name": "qa", "file": "qa.yaml", "kind": "generate"},
  "data": {"file": "qa.jsonl", "sha256": "abc", "examples": 4},
  "model": "m2",
  "prompt": {"name": "qa", "strategy": "few_shot", "sha256": "p2"},
  "metrics": {
    "exact_match": {"mean": 0.750000, "ci95_low": 0.250000, "ci95_high": 1.000000, "n": 4},
    "token_f1": {"mean": 0.550000, "ci95_low": 0.200000, "ci95_high": 0.900000, "n": 4}
  },
  "examples": [
    {"id": "q1", "prediction": "<script>alert(1)</script>", "reference": "a",
      "scores": {"exact_match": 0.0, "token_f1": 0.3}},
    {"id": "q2", "prediction": "c", "reference": "c",
      "scores": {"exact_match": 1.0, "token_f1": 1.0}},
    {"id": "q3", "prediction": "d", "reference": "d",
      "scores": {"exact_match": 1.0, "token_f1": 0.5}},
    {"id": "q4", "prediction": "e", "reference": "e",
      "scores": {"exact_match": 1.0, "token_f1": 0.4}}
  ]
}
)";

// A second task with a single run.
constexpr char kSumm[] = R"({
  "format": "anvil-eval-results/1",
  "task": {"name": "summ", "file": "summ.yaml", "kind": "generate"},
  "data": {"file": "summ.jsonl", "sha256": "def", "examples": 1},
  "model": "m1",
  "prompt": {"name": "summ", "strategy": "zero_shot", "sha256": "p3"},
  "metrics": {"rouge_l": {"mean": 0.400000, "ci95_low": 0.300000, "ci95_high": 0.500000, "n": 1}},
  "examples": [{"id": "s1", "prediction": "p", "reference": "r", "scores": {"rouge_l": 0.400000}}]
}
)";

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path =
      ::testing::TempDir() + "/eval_compare_test_" + std::to_string(getpid()) + "_" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

Comparison CompareTwo() {
  auto c = CompareResultFiles({WriteTemp("base.json", kBaseline), WriteTemp("other.json", kOther)});
  EXPECT_THAT(c.status(), IsOk());
  return c.ok() ? *c : Comparison{};
}

TEST(EvalCompareTest, TableCellsAndBestMarks) {
  Comparison c = CompareTwo();
  ASSERT_EQ(c.tasks.size(), 1u);
  const TaskComparison& t = c.tasks[0];
  EXPECT_EQ(t.task, "qa");
  EXPECT_THAT(t.metrics, ElementsAre("exact_match", "token_f1"));
  EXPECT_EQ(t.flip_metric, "exact_match");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(RowLabel(t.rows[0]), "m1 / zero_shot");
  EXPECT_EQ(RowLabel(t.rows[1]), "m2 / few_shot");
  EXPECT_EQ(FormatCell(t.rows[0].cells[0]), "0.5000 [0.0000, 1.0000]");
  EXPECT_EQ(FormatCell(t.rows[0].cells[1]), "0.6000 [0.3000, 0.9000]");
  EXPECT_EQ(FormatCell(t.rows[1].cells[0]), "0.7500 [0.2500, 1.0000]");
  EXPECT_EQ(FormatCell(t.rows[1].cells[1]), "0.5500 [0.2000, 0.9000]");
  EXPECT_FALSE(t.rows[0].cells[0].best);
  EXPECT_TRUE(t.rows[0].cells[1].best);
  EXPECT_TRUE(t.rows[1].cells[0].best);
  EXPECT_FALSE(t.rows[1].cells[1].best);
  EXPECT_EQ(RenderTable(c),
            "task: qa\n"
            "model / prompt  exact_match                token_f1\n"
            "m1 / zero_shot  0.5000 [0.0000, 1.0000]    0.6000 [0.3000, 0.9000] *\n"
            "m2 / few_shot   0.7500 [0.2500, 1.0000] *  0.5500 [0.2000, 0.9000]\n"
            "flips on exact_match vs m1 / zero_shot:\n"
            "  m2 / few_shot: wrong->right 2 (q2, q3); right->wrong 1 (q1)\n");
}

TEST(EvalCompareTest, FlipsAgainstBaseline) {
  Comparison c = CompareTwo();
  ASSERT_EQ(c.tasks.size(), 1u);
  const std::vector<CompareRow>& rows = c.tasks[0].rows;
  EXPECT_TRUE(rows[0].wrong_to_right.empty());
  EXPECT_TRUE(rows[0].right_to_wrong.empty());
  ASSERT_EQ(rows[1].wrong_to_right.size(), 2u);
  EXPECT_EQ(rows[1].wrong_to_right[0].id, "q2");
  EXPECT_EQ(rows[1].wrong_to_right[0].baseline_prediction, "b");
  EXPECT_EQ(rows[1].wrong_to_right[0].prediction, "c");
  EXPECT_EQ(rows[1].wrong_to_right[1].id, "q3");
  ASSERT_EQ(rows[1].right_to_wrong.size(), 1u);
  EXPECT_EQ(rows[1].right_to_wrong[0].id, "q1");
  EXPECT_EQ(rows[1].right_to_wrong[0].reference, "a");
}

TEST(EvalCompareTest, ContinuousMetricFlipsOnlyPastHalf) {
  // Flip on token_f1: q1 1.0 -> 0.3 (lost, 0.7), q2 0.2 -> 1.0 (gained, 0.8); q4 0.8 -> 0.4 and
  // q3 0.4 -> 0.5 move by 0.5 or less and do not count.
  ANVIL_ASSERT_OK_AND_ASSIGN(ResultRun base, ParseResultRun("base.json", kBaseline));
  ANVIL_ASSERT_OK_AND_ASSIGN(ResultRun other, ParseResultRun("other.json", kOther));
  std::swap(base.metric_order[0], base.metric_order[1]);
  Comparison c = BuildComparison({base, other});
  ASSERT_EQ(c.tasks.size(), 1u);
  EXPECT_EQ(c.tasks[0].flip_metric, "token_f1");
  const CompareRow& row = c.tasks[0].rows[1];
  ASSERT_EQ(row.wrong_to_right.size(), 1u);
  EXPECT_EQ(row.wrong_to_right[0].id, "q2");
  ASSERT_EQ(row.right_to_wrong.size(), 1u);
  EXPECT_EQ(row.right_to_wrong[0].id, "q1");
}

TEST(EvalCompareTest, MarkdownExact) {
  auto c = CompareResultFiles({WriteTemp("base.json", kBaseline), WriteTemp("other.json", kOther),
                               WriteTemp("summ.json", kSumm)});
  ASSERT_THAT(c.status(), IsOk());
  EXPECT_EQ(RenderMarkdown(*c),
            "## qa\n"
            "\n"
            "| model | prompt | exact_match | token_f1 |\n"
            "|---|---|---|---|\n"
            "| m1 | zero_shot | 0.5000 [0.0000, 1.0000] | **0.6000 [0.3000, 0.9000]** |\n"
            "| m2 | few_shot | **0.7500 [0.2500, 1.0000]** | 0.5500 [0.2000, 0.9000] |\n"
            "\n"
            "Flips on `exact_match` against the baseline (m1 / zero_shot):\n"
            "\n"
            "- m2 / few_shot: wrong->right 2 (`q2`, `q3`); right->wrong 1 (`q1`)\n"
            "\n"
            "## summ\n"
            "\n"
            "| model | prompt | rouge_l |\n"
            "|---|---|---|\n"
            "| m1 | zero_shot | **0.4000 [0.3000, 0.5000]** |\n");
}

TEST(EvalCompareTest, JsonIsStableAndMachineReadable) {
  Comparison c = CompareTwo();
  const std::string json = RenderJson(c);
  EXPECT_EQ(json, RenderJson(c));
  EXPECT_THAT(json, HasSubstr("\"format\": \"anvil-compare/1\""));
  EXPECT_THAT(json, HasSubstr("\"wrong_to_right\": [\n"));
  // Keys in the documented order, not alphabetical.
  EXPECT_LT(json.find("\"mean\""), json.find("\"ci95_low\""));
  EXPECT_LT(json.find("\"model\""), json.find("\"strategy\""));
}

TEST(EvalCompareTest, HtmlHasOneChartPerMetricAndEscapes) {
  const std::string html = RenderHtml(CompareTwo());
  size_t svgs = 0;
  for (size_t at = html.find("<svg "); at != std::string::npos; at = html.find("<svg ", at + 1)) {
    ++svgs;
  }
  EXPECT_EQ(svgs, 2u);
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(html, Not(HasSubstr("<script")));
  // Self-contained: nothing to fetch.
  EXPECT_THAT(html, Not(HasSubstr("src=")));
  EXPECT_THAT(html, Not(HasSubstr("href=")));
  EXPECT_THAT(html, Not(HasSubstr("@import")));
  EXPECT_EQ(html.rfind("</html>\n"), html.size() - 8);
  EXPECT_THAT(html, HasSubstr("<h4>m2 / few_shot: 2 wrong&rarr;right, 1 right&rarr;wrong</h4>"));
}

TEST(EvalCompareTest, ReadsWhatTheHarnessWrites) {
  // The writer's own output (eval/results.cc), metrics in an order that is not alphabetical.
  TaskResult r;
  r.task_name = "qa";
  r.kind = "generate";
  r.data_sha256 = "abc";
  r.model = "tiny.gguf";
  r.strategy = "chain_of_thought";
  r.max_tokens = 8;
  r.metrics = {{"token_f1", {0.5, 0.25, 0.75}, 2}, {"exact_match", {0.5, 0.0, 1.0}, 2}};
  r.examples = {
      {"e1", "yes", "thinking... yes", "yes", {{"token_f1", 1.0}, {"exact_match", 1.0}}, {}},
      {"e2", "no", "", "maybe", {{"token_f1", 0.0}, {"exact_match", 0.0}}, {}}};
  ANVIL_ASSERT_OK_AND_ASSIGN(ResultRun run, ParseResultRun("r.json", ResultsJson(r)));
  EXPECT_EQ(run.task, "qa");
  EXPECT_EQ(run.model, "tiny.gguf");
  EXPECT_EQ(run.strategy, "chain_of_thought");
  EXPECT_THAT(run.metric_order, ElementsAre("token_f1", "exact_match"));
  EXPECT_DOUBLE_EQ(run.metrics["token_f1"].high, 0.75);
  ASSERT_EQ(run.examples.size(), 2u);
  EXPECT_EQ(run.examples[1].reference, "maybe");
  EXPECT_DOUBLE_EQ(run.examples[0].scores["exact_match"], 1.0);
}

TEST(EvalCompareTest, BadFilesNameFileAndField) {
  const std::string not_json = WriteTemp("not_json.json", "{\"format\": ");
  EXPECT_THAT(LoadResultRun(not_json).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(not_json)));
  EXPECT_THAT(ParseResultRun("f.json", R"({"format": "other/2"})").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("f.json: field 'format' is 'other/2'")));
  std::string bad_mean = kBaseline;
  bad_mean.replace(bad_mean.find("0.500000"), 8, "\"half\"");
  const std::string bad = WriteTemp("bad_mean.json", bad_mean);
  EXPECT_THAT(CompareResultFiles({WriteTemp("base.json", kBaseline), bad}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(bad + ": field 'metrics.exact_match.mean' must be a number")));
  std::string no_id = kOther;
  no_id.replace(no_id.find("\"id\": \"q3\""), 10, "\"ID\": \"q3\"");
  EXPECT_THAT(ParseResultRun("o.json", no_id).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("o.json: field 'examples[2].id' is missing")));
  EXPECT_THAT(LoadResultRun(::testing::TempDir() + "/no_such_result.json").status(),
              StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(CompareResultFiles({}).status(), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil::eval
