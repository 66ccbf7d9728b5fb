// Side-by-side comparison of eval result files ("anvil-eval-results/1", written by
// eval/results.cc): groups runs by task, one row per (model, prompt strategy), marks the best row
// per metric, and lists the examples that flipped against the first (baseline) row. Rendering as
// a terminal table, Markdown, JSON or one self-contained HTML page lives in compare_render.cc and
// compare_html.cc; the `anvil compare` command (cli/cmd_compare.cc) only parses flags.
#ifndef ANVIL_EVAL_COMPARE_H_
#define ANVIL_EVAL_COMPARE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace anvil::eval {

// One metric of one run: the bootstrap mean and 95% CI as written in the result file.
struct CompareCell {
  bool present = false;  // false: this run did not report the metric
  double mean = 0, low = 0, high = 0;
  int64_t n = 0;
  bool best = false;  // highest mean of the task's rows (ties all marked); metrics are
                      // higher-is-better (exact match, F1, ROUGE, chrF, BLEU)
};

struct CompareExample {
  std::string id, prediction, reference;
  std::map<std::string, double> scores;  // non-finite (null) scores are left out
};

// One loaded result file.
struct ResultRun {
  std::string file;  // the path it was loaded from
  std::string task, task_kind, data_sha256, model, strategy;  // strategy "" when none
  std::vector<std::string> metric_order;                      // as listed in the file
  std::map<std::string, CompareCell> metrics;
  std::vector<CompareExample> examples;
};

// An example whose score on the flip metric moved by more than 0.5 against the baseline row
// (1 vs 0 for exact match).
struct Flip {
  std::string id, baseline_prediction, prediction, reference;
  double before = 0, after = 0;
};

struct CompareRow {
  std::string file, model, strategy;
  std::vector<CompareCell> cells;     // parallel to TaskComparison::metrics
  std::vector<Flip> wrong_to_right;   // in the row's example order; empty for the baseline
  std::vector<Flip> right_to_wrong;
};

struct TaskComparison {
  std::string task;
  std::vector<std::string> metrics;  // union over rows, in first-seen order
  std::string flip_metric;           // the baseline's first metric; "" if it has none
  std::vector<CompareRow> rows;      // rows[0] is the baseline
  std::vector<std::string> notes;    // e.g. rows scored on different data
};

struct Comparison {
  std::vector<TaskComparison> tasks;  // in order of first appearance
};

// Reads one result file. NotFound if it cannot be opened; InvalidArgument naming the file and
// the field for anything that is not a well-formed "anvil-eval-results/1" file.
absl::StatusOr<ResultRun> LoadResultRun(const std::string& path);
absl::StatusOr<ResultRun> ParseResultRun(const std::string& path, const std::string& text);

// Groups runs by task (in the order given) and fills best marks and flips.
Comparison BuildComparison(const std::vector<ResultRun>& runs);

// LoadResultRun on each path, then BuildComparison. InvalidArgument for no paths.
absl::StatusOr<Comparison> CompareResultFiles(const std::vector<std::string>& paths);

// "0.5000 [0.2000, 0.8000]", or "-" for a missing metric.
std::string FormatCell(const CompareCell& cell);
// "model / strategy" (or just the model when there is no strategy).
std::string RowLabel(const CompareRow& row);

std::string RenderTable(const Comparison& c);     // plain text, '*' marks the best cell
std::string RenderMarkdown(const Comparison& c);  // GitHub tables, best cell in bold
std::string RenderJson(const Comparison& c);      // "anvil-compare/1", fixed key order
std::string RenderHtml(const Comparison& c);      // one page: inline CSS and SVG, no scripts

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_COMPARE_H_
