// Loading result files for `anvil compare` and building the comparison (best marks, flips).
// Result files come from other machines and other versions, so every field is checked and a
// failure names the file and the field; rendering is in compare_render.cc and compare_html.cc.
#include "eval/compare.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/core/status_macros.h"
#include "nlohmann/json.hpp"

namespace anvil::eval {
namespace {

// ordered_json keeps the metrics in the file's order (the first one is the flip metric).
using Json = nlohmann::ordered_json;

constexpr char kFormat[] = "anvil-eval-results/1";
// A score change larger than this counts as a flip: 1 vs 0 for exact match, and a large move for
// continuous metrics.
constexpr double kFlipThreshold = 0.5;

absl::Status Bad(const std::string& path, const std::string& field, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": field '", field, "' ", what));
}

absl::StatusOr<std::string> GetString(const std::string& path, const Json& obj,
                                      const std::string& key, const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end()) return Bad(path, field, "is missing");
  if (!it->is_string()) return Bad(path, field, "must be a string");
  return it->get<std::string>();
}

// A number, or null (written for non-finite values) as NaN.
absl::StatusOr<double> GetNumber(const std::string& path, const Json& obj, const std::string& key,
                                 const std::string& field) {
  auto it = obj.find(key);
  if (it == obj.end()) return Bad(path, field, "is missing");
  if (it->is_null()) return std::nan("");
  if (!it->is_number()) return Bad(path, field, "must be a number");
  return it->get<double>();
}

absl::Status ParseMetrics(const std::string& path, const Json& metrics, ResultRun* run) {
  if (!metrics.is_object()) return Bad(path, "metrics", "must be an object");
  for (auto it = metrics.begin(); it != metrics.end(); ++it) {
    const std::string field = absl::StrCat("metrics.", it.key());
    if (!it->is_object()) return Bad(path, field, "must be an object");
    CompareCell cell;
    cell.present = true;
    ANVIL_ASSIGN_OR_RETURN(cell.mean, GetNumber(path, *it, "mean", field + ".mean"));
    ANVIL_ASSIGN_OR_RETURN(cell.low, GetNumber(path, *it, "ci95_low", field + ".ci95_low"));
    ANVIL_ASSIGN_OR_RETURN(cell.high, GetNumber(path, *it, "ci95_high", field + ".ci95_high"));
    auto n = it->find("n");
    if (n == it->end() || !n->is_number_integer()) {
      return Bad(path, field + ".n", "must be an integer");
    }
    cell.n = n->get<int64_t>();
    run->metric_order.push_back(it.key());
    run->metrics[it.key()] = cell;
  }
  return absl::OkStatus();
}

absl::Status ParseExamples(const std::string& path, const Json& examples, ResultRun* run) {
  if (!examples.is_array()) return Bad(path, "examples", "must be an array");
  for (size_t i = 0; i < examples.size(); ++i) {
    const std::string field = absl::StrCat("examples[", i, "]");
    const Json& e = examples[i];
    if (!e.is_object()) return Bad(path, field, "must be an object");
    CompareExample ex;
    ANVIL_ASSIGN_OR_RETURN(ex.id, GetString(path, e, "id", field + ".id"));
    ANVIL_ASSIGN_OR_RETURN(ex.prediction, GetString(path, e, "prediction", field + ".prediction"));
    ANVIL_ASSIGN_OR_RETURN(ex.reference, GetString(path, e, "reference", field + ".reference"));
    auto scores = e.find("scores");
    if (scores == e.end() || !scores->is_object()) {
      return Bad(path, field + ".scores", "must be an object");
    }
    for (auto s = scores->begin(); s != scores->end(); ++s) {
      if (s->is_null()) continue;
      if (!s->is_number()) return Bad(path, field + ".scores." + s.key(), "must be a number");
      ex.scores[s.key()] = s->get<double>();
    }
    run->examples.push_back(std::move(ex));
  }
  return absl::OkStatus();
}

void FillBest(TaskComparison* t) {
  for (size_t m = 0; m < t->metrics.size(); ++m) {
    double best = -INFINITY;
    for (const CompareRow& r : t->rows) {
      const CompareCell& cell = r.cells[m];
      if (cell.present && std::isfinite(cell.mean)) best = std::max(best, cell.mean);
    }
    for (CompareRow& r : t->rows) {
      r.cells[m].best = r.cells[m].present && std::isfinite(best) && r.cells[m].mean == best;
    }
  }
}

void FillFlips(const ResultRun& baseline, const ResultRun& run, const std::string& metric,
               CompareRow* row) {
  std::map<std::string, const CompareExample*> base;
  for (const CompareExample& e : baseline.examples) base.emplace(e.id, &e);
  for (const CompareExample& e : run.examples) {
    auto b = base.find(e.id);
    if (b == base.end()) continue;
    auto before = b->second->scores.find(metric);
    auto after = e.scores.find(metric);
    if (before == b->second->scores.end() || after == e.scores.end()) continue;
    const double delta = after->second - before->second;
    if (std::fabs(delta) <= kFlipThreshold) continue;
    Flip f{e.id, b->second->prediction, e.prediction, e.reference, before->second, after->second};
    (delta > 0 ? row->wrong_to_right : row->right_to_wrong).push_back(std::move(f));
  }
}

}  // namespace

absl::StatusOr<ResultRun> ParseResultRun(const std::string& path, const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  }
  if (!j.is_object()) return Bad(path, "(top level)", "must be an object");
  ResultRun run;
  run.file = path;
  ANVIL_ASSIGN_OR_RETURN(std::string format, GetString(path, j, "format", "format"));
  if (format != kFormat) {
    return Bad(path, "format", absl::StrCat("is '", format, "', expected '", kFormat, "'"));
  }
  auto task = j.find("task");
  if (task == j.end() || !task->is_object()) return Bad(path, "task", "must be an object");
  ANVIL_ASSIGN_OR_RETURN(run.task, GetString(path, *task, "name", "task.name"));
  ANVIL_ASSIGN_OR_RETURN(run.task_kind, GetString(path, *task, "kind", "task.kind"));
  if (auto data = j.find("data"); data != j.end()) {
    if (!data->is_object()) return Bad(path, "data", "must be an object");
    ANVIL_ASSIGN_OR_RETURN(run.data_sha256, GetString(path, *data, "sha256", "data.sha256"));
  }
  ANVIL_ASSIGN_OR_RETURN(run.model, GetString(path, j, "model", "model"));
  if (auto prompt = j.find("prompt"); prompt != j.end()) {
    if (!prompt->is_object()) return Bad(path, "prompt", "must be an object");
    ANVIL_ASSIGN_OR_RETURN(run.strategy, GetString(path, *prompt, "strategy", "prompt.strategy"));
  }
  auto metrics = j.find("metrics");
  if (metrics == j.end()) return Bad(path, "metrics", "is missing");
  ANVIL_RETURN_IF_ERROR(ParseMetrics(path, *metrics, &run));
  auto examples = j.find("examples");
  if (examples == j.end()) return Bad(path, "examples", "is missing");
  ANVIL_RETURN_IF_ERROR(ParseExamples(path, *examples, &run));
  return run;
}

absl::StatusOr<ResultRun> LoadResultRun(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be opened"));
  std::stringstream text;
  text << in.rdbuf();
  return ParseResultRun(path, text.str());
}

Comparison BuildComparison(const std::vector<ResultRun>& runs) {
  Comparison c;
  std::map<std::string, std::vector<const ResultRun*>> by_task;
  for (const ResultRun& r : runs) {
    auto& group = by_task[r.task];
    if (group.empty()) c.tasks.push_back(TaskComparison{r.task, {}, {}, {}, {}});
    group.push_back(&r);
  }
  for (TaskComparison& t : c.tasks) {
    const std::vector<const ResultRun*>& group = by_task[t.task];
    for (const ResultRun* r : group) {
      for (const std::string& m : r->metric_order) {
        if (std::find(t.metrics.begin(), t.metrics.end(), m) == t.metrics.end()) {
          t.metrics.push_back(m);
        }
      }
      if (r->data_sha256 != group[0]->data_sha256) {
        t.notes.push_back(absl::StrCat(r->file, " was scored on different data (sha256 ",
                                       r->data_sha256, ") than the baseline ", group[0]->file));
      }
    }
    if (!group[0]->metric_order.empty()) t.flip_metric = group[0]->metric_order[0];
    for (const ResultRun* r : group) {
      CompareRow row{r->file, r->model, r->strategy, {}, {}, {}};
      for (const std::string& m : t.metrics) {
        auto it = r->metrics.find(m);
        row.cells.push_back(it == r->metrics.end() ? CompareCell{} : it->second);
      }
      if (r != group[0] && !t.flip_metric.empty()) FillFlips(*group[0], *r, t.flip_metric, &row);
      t.rows.push_back(std::move(row));
    }
    FillBest(&t);
  }
  return c;
}

absl::StatusOr<Comparison> CompareResultFiles(const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("compare needs at least one result file");
  std::vector<ResultRun> runs;
  for (const std::string& p : paths) {
    ANVIL_ASSIGN_OR_RETURN(ResultRun r, LoadResultRun(p));
    runs.push_back(std::move(r));
  }
  return BuildComparison(runs);
}

std::string FormatCell(const CompareCell& cell) {
  if (!cell.present) return "-";
  return absl::StrFormat("%.4f [%.4f, %.4f]", cell.mean, cell.low, cell.high);
}

std::string RowLabel(const CompareRow& row) {
  return row.strategy.empty() ? row.model : absl::StrCat(row.model, " / ", row.strategy);
}

}  // namespace anvil::eval
