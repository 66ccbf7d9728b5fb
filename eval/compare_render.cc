// Text renderers for a Comparison (eval/compare.h): the terminal table, Markdown and JSON. All
// three are pure functions of the Comparison, so the same inputs give the same bytes; the HTML
// page is in compare_html.cc.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "eval/compare.h"
#include "nlohmann/json.hpp"

namespace anvil::eval {
namespace {

std::string Ids(const std::vector<Flip>& flips, const char* quote) {
  std::vector<std::string> ids;
  for (const Flip& f : flips) ids.push_back(absl::StrCat(quote, f.id, quote));
  return absl::StrJoin(ids, ", ");
}

// "wrong->right 2 (q1, q3); right->wrong 1 (q2)", or "no flips".
std::string FlipSummary(const CompareRow& row, const char* quote) {
  std::vector<std::string> parts;
  if (!row.wrong_to_right.empty()) {
    parts.push_back(absl::StrCat("wrong->right ", row.wrong_to_right.size(), " (",
                                 Ids(row.wrong_to_right, quote), ")"));
  }
  if (!row.right_to_wrong.empty()) {
    parts.push_back(absl::StrCat("right->wrong ", row.right_to_wrong.size(), " (",
                                 Ids(row.right_to_wrong, quote), ")"));
  }
  return parts.empty() ? "no flips" : absl::StrJoin(parts, "; ");
}

std::string Pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

std::string MdEscape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"|", "\\|"}, {"\n", " "}});
}

}  // namespace

std::string RenderTable(const Comparison& c) {
  std::string out;
  for (const TaskComparison& t : c.tasks) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, "task: ", t.task, "\n");
    // cells[r][0] is the row label; the best cell of a metric gets " *".
    std::vector<std::vector<std::string>> cells = {{"model / prompt"}};
    for (const std::string& m : t.metrics) cells[0].push_back(m);
    for (const CompareRow& r : t.rows) {
      cells.push_back({RowLabel(r)});
      for (const CompareCell& cell : r.cells) {
        cells.back().push_back(FormatCell(cell) + (cell.best ? " *" : ""));
      }
    }
    std::vector<size_t> width(cells[0].size(), 0);
    for (const auto& row : cells) {
      for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (const auto& row : cells) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        absl::StrAppend(&line, i == 0 ? "" : "  ", Pad(row[i], width[i]));
      }
      line.erase(line.find_last_not_of(' ') + 1);
      absl::StrAppend(&out, line, "\n");
    }
    for (const std::string& note : t.notes) absl::StrAppend(&out, "note: ", note, "\n");
    if (t.rows.size() > 1 && !t.flip_metric.empty()) {
      absl::StrAppend(&out, "flips on ", t.flip_metric, " vs ", RowLabel(t.rows[0]), ":\n");
      for (size_t r = 1; r < t.rows.size(); ++r) {
        absl::StrAppend(&out, "  ", RowLabel(t.rows[r]), ": ", FlipSummary(t.rows[r], ""), "\n");
      }
    }
  }
  return out;
}

std::string RenderMarkdown(const Comparison& c) {
  std::string out;
  for (const TaskComparison& t : c.tasks) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, "## ", MdEscape(t.task), "\n\n| model | prompt |");
    for (const std::string& m : t.metrics) absl::StrAppend(&out, " ", MdEscape(m), " |");
    absl::StrAppend(&out, "\n|---|---|");
    for (size_t i = 0; i < t.metrics.size(); ++i) out += "---|";
    out += "\n";
    for (const CompareRow& r : t.rows) {
      absl::StrAppend(&out, "| ", MdEscape(r.model), " | ",
                      r.strategy.empty() ? "-" : MdEscape(r.strategy), " |");
      for (const CompareCell& cell : r.cells) {
        const std::string text = FormatCell(cell);
        absl::StrAppend(&out, " ", cell.best ? absl::StrCat("**", text, "**") : text, " |");
      }
      out += "\n";
    }
    for (const std::string& note : t.notes) absl::StrAppend(&out, "\n> note: ", note, "\n");
    if (t.rows.size() > 1 && !t.flip_metric.empty()) {
      absl::StrAppend(&out, "\nFlips on `", t.flip_metric, "` against the baseline (",
                      MdEscape(RowLabel(t.rows[0])), "):\n\n");
      for (size_t r = 1; r < t.rows.size(); ++r) {
        absl::StrAppend(&out, "- ", MdEscape(RowLabel(t.rows[r])), ": ",
                        FlipSummary(t.rows[r], "`"), "\n");
      }
    }
  }
  return out;
}

std::string RenderJson(const Comparison& c) {
  using Json = nlohmann::ordered_json;  // insertion order = the stable key order below
  Json tasks = Json::array();
  for (const TaskComparison& t : c.tasks) {
    Json rows = Json::array();
    for (const CompareRow& r : t.rows) {
      Json metrics = Json::object();
      for (size_t m = 0; m < t.metrics.size(); ++m) {
        const CompareCell& cell = r.cells[m];
        if (!cell.present) {
          metrics[t.metrics[m]] = nullptr;
          continue;
        }
        metrics[t.metrics[m]] = Json{{"mean", cell.mean}, {"ci95_low", cell.low},
                                     {"ci95_high", cell.high}, {"n", cell.n},
                                     {"best", cell.best}};
      }
      Json gained = Json::array(), lost = Json::array();
      for (const Flip& f : r.wrong_to_right) gained.push_back(f.id);
      for (const Flip& f : r.right_to_wrong) lost.push_back(f.id);
      rows.push_back(Json{{"file", r.file}, {"model", r.model}, {"strategy", r.strategy},
                          {"metrics", metrics}, {"wrong_to_right", gained},
                          {"right_to_wrong", lost}});
    }
    tasks.push_back(Json{{"task", t.task}, {"metrics", t.metrics},
                         {"flip_metric", t.flip_metric}, {"notes", t.notes}, {"rows", rows}});
  }
  Json doc{{"format", "anvil-compare/1"}, {"tasks", tasks}};
  return doc.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace anvil::eval
