// The HTML renderer for a Comparison (eval/compare.h): one self-contained page with inline CSS,
// one inline SVG bar chart (mean with 95% CI whiskers) per metric, and the flipped examples with
// prediction vs reference. No scripts, fonts or network: it opens from a CI artifact as is.
// Every string from a result file goes through Escape().
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/compare.h"

namespace anvil::eval {
namespace {

constexpr char kStyle[] =
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0 1em}"
    "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}td.best{font-weight:bold;background:#e6f4e6}"
    "td.pre{white-space:pre-wrap;font-family:monospace;max-width:30em}"
    ".gain{color:#1a7f37}.loss{color:#c62828}.note{color:#8a6d00}"
    "svg.chart{display:block;margin:0.5em 0 1.5em}"
    "svg text{font:12px sans-serif;fill:#222}"
    "rect.bar{fill:#8fb3e0}rect.bar.best{fill:#4c9a5e}"
    "line.ci{stroke:#333;stroke-width:1.5}";

// Chart geometry, in SVG user units.
constexpr int kLabelWidth = 220, kBarWidth = 300, kValueWidth = 70, kRowHeight = 24, kTop = 22;

std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  return out;
}

// One horizontal bar per row: the mean as a bar, the CI as a whisker with end caps. Scores in
// [0, 1] share a 0..1 axis; larger ones (BLEU, chrF on 0..100) scale to the largest CI end.
std::string Chart(const TaskComparison& t, size_t m) {
  double top = 0;
  for (const CompareRow& r : t.rows) {
    const CompareCell& c = r.cells[m];
    if (c.present && std::isfinite(c.mean)) top = std::max({top, c.mean, c.high});
  }
  if (!(top > 1)) top = 1;
  auto x = [&](double v) {
    if (!std::isfinite(v)) v = 0;
    return kLabelWidth + kBarWidth * std::clamp(v / top, 0.0, 1.0);
  };
  const int width = kLabelWidth + kBarWidth + kValueWidth;
  const int height = kTop + kRowHeight * static_cast<int>(t.rows.size()) + 4;
  std::string out = absl::StrFormat(
      "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" role=\"img\">",
      width, height, width, height);
  absl::StrAppend(&out, "<title>", Escape(t.metrics[m]), " (mean, 95% CI)</title>",
                  "<text x=\"0\" y=\"14\" font-weight=\"bold\">", Escape(t.metrics[m]),
                  "</text>");
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const CompareCell& c = t.rows[i].cells[m];
    const int y = kTop + kRowHeight * static_cast<int>(i);
    absl::StrAppend(&out, absl::StrFormat("<text x=\"0\" y=\"%d\">%s</text>", y + 16,
                                          Escape(RowLabel(t.rows[i]))));
    if (!c.present) continue;
    const double mid = y + 12;
    absl::StrAppend(
        &out,
        absl::StrFormat("<rect class=\"bar%s\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"16\"/>",
                        c.best ? " best" : "", kLabelWidth, y + 4, x(c.mean) - kLabelWidth),
        absl::StrFormat("<line class=\"ci\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>",
                        x(c.low), mid, x(c.high), mid),
        absl::StrFormat("<line class=\"ci\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>",
                        x(c.low), y + 7, x(c.low), y + 17),
        absl::StrFormat("<line class=\"ci\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>",
                        x(c.high), y + 7, x(c.high), y + 17),
        absl::StrFormat("<text x=\"%d\" y=\"%d\">%.4f</text>", kLabelWidth + kBarWidth + 6,
                        y + 16, c.mean));
  }
  out += "</svg>\n";
  return out;
}

std::string MetricTable(const TaskComparison& t) {
  std::string out = "<table>\n<tr><th>model</th><th>prompt</th>";
  for (const std::string& m : t.metrics) absl::StrAppend(&out, "<th>", Escape(m), "</th>");
  out += "</tr>\n";
  for (const CompareRow& r : t.rows) {
    absl::StrAppend(&out, "<tr><td>", Escape(r.model), "</td><td>",
                    Escape(r.strategy.empty() ? "-" : r.strategy), "</td>");
    for (const CompareCell& c : r.cells) {
      absl::StrAppend(&out, c.best ? "<td class=\"best\">" : "<td>", Escape(FormatCell(c)),
                      "</td>");
    }
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

void AppendFlipRows(const std::vector<Flip>& flips, const char* cls, const char* label,
                    std::string* out) {
  for (const Flip& f : flips) {
    absl::StrAppend(out, "<tr><td>", Escape(f.id), "</td><td class=\"", cls, "\">", label,
                    absl::StrFormat(" (%.2f &rarr; %.2f)", f.before, f.after),
                    "</td><td class=\"pre\">", Escape(f.baseline_prediction),
                    "</td><td class=\"pre\">", Escape(f.prediction), "</td><td class=\"pre\">",
                    Escape(f.reference), "</td></tr>\n");
  }
}

std::string Flips(const TaskComparison& t) {
  if (t.rows.size() < 2 || t.flip_metric.empty()) return "";
  std::string out = absl::StrCat("<h3>Flips on ", Escape(t.flip_metric), " against ",
                                 Escape(RowLabel(t.rows[0])), "</h3>\n");
  for (size_t r = 1; r < t.rows.size(); ++r) {
    const CompareRow& row = t.rows[r];
    absl::StrAppend(&out, "<h4>", Escape(RowLabel(row)), ": ", row.wrong_to_right.size(),
                    " wrong&rarr;right, ", row.right_to_wrong.size(), " right&rarr;wrong</h4>\n");
    if (row.wrong_to_right.empty() && row.right_to_wrong.empty()) continue;
    out += "<table>\n<tr><th>id</th><th>change</th><th>baseline prediction</th>"
           "<th>prediction</th><th>reference</th></tr>\n";
    AppendFlipRows(row.wrong_to_right, "gain", "wrong&rarr;right", &out);
    AppendFlipRows(row.right_to_wrong, "loss", "right&rarr;wrong", &out);
    out += "</table>\n";
  }
  return out;
}

}  // namespace

std::string RenderHtml(const Comparison& c) {
  std::string out = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<title>anvil compare</title>\n<style>",
      kStyle, "</style>\n</head>\n<body>\n<h1>anvil compare</h1>\n");
  for (const TaskComparison& t : c.tasks) {
    absl::StrAppend(&out, "<h2>", Escape(t.task), "</h2>\n", MetricTable(t));
    for (const std::string& note : t.notes) {
      absl::StrAppend(&out, "<p class=\"note\">note: ", Escape(note), "</p>\n");
    }
    for (size_t m = 0; m < t.metrics.size(); ++m) out += Chart(t, m);
    out += Flips(t);
  }
  return out + "</body>\n</html>\n";
}

}  // namespace anvil::eval
