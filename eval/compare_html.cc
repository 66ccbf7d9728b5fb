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
    "td.num{white-space:nowrap;font-variant-numeric:tabular-nums}"
    ".ci{display:block;font-size:85%;color:#555;font-weight:normal}"
    "div.clip{max-height:9em;overflow:auto}"
    ".gain{color:#1a7f37}.loss{color:#c62828}.note{color:#8a6d00}"
    "svg.chart{display:block;margin:0.5em 0 1.5em}"
    "svg text{font:12px sans-serif;fill:#222}svg text.title{font-weight:bold}"
    "rect.bar{fill:#8fb3e0}rect.bar.best{fill:#4c9a5e}"
    "line.ci{stroke:#333;stroke-width:1.5}";

// Chart geometry, in SVG user units. The label column grows with the longest row label (about
// kCharWidth per character of 12px sans-serif) up to kMaxLabelChars; longer labels keep their
// end ("...Instruct.Q4_1.gguf / few_shot", the part that tells rows apart) and carry the whole
// label as a tooltip.
constexpr int kBarWidth = 300, kValueWidth = 70, kRowHeight = 24, kTop = 22;
constexpr int kCharWidth = 7, kMinLabelChars = 20, kMaxLabelChars = 64;

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

// Flip tables list at most this many examples per direction (the JSON report has them all).
constexpr size_t kMaxFlipRows = 20;

// A label of at most kMaxLabelChars characters (UTF-8 aware: never cuts inside a character).
std::string FitLabel(const std::string& label) {
  std::vector<size_t> starts;  // byte offset of each character
  for (size_t i = 0; i < label.size(); ++i) {
    if ((static_cast<unsigned char>(label[i]) & 0xC0) != 0x80) starts.push_back(i);
  }
  if (starts.size() <= static_cast<size_t>(kMaxLabelChars)) return label;
  return "\u2026" + label.substr(starts[starts.size() - (kMaxLabelChars - 1)]);
}

size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (char ch : s) n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
  return n;
}

// One horizontal bar per row: the mean as a bar, the CI as a whisker with end caps. Scores in
// [0, 1] share a 0..1 axis; larger ones (BLEU, chrF on 0..100) scale to the largest CI end.
std::string Chart(const TaskComparison& t, size_t m) {
  size_t chars = kMinLabelChars;
  for (const CompareRow& r : t.rows) chars = std::max(chars, Utf8Length(FitLabel(RowLabel(r))));
  const int label_width = kCharWidth * static_cast<int>(chars) + 10;
  double top = 0;
  for (const CompareRow& r : t.rows) {
    const CompareCell& c = r.cells[m];
    if (c.present && std::isfinite(c.mean)) top = std::max({top, c.mean, c.high});
  }
  if (!(top > 1)) top = 1;
  auto x = [&](double v) {
    if (!std::isfinite(v)) v = 0;
    return label_width + kBarWidth * std::clamp(v / top, 0.0, 1.0);
  };
  const int width = label_width + kBarWidth + kValueWidth;
  const int height = kTop + kRowHeight * static_cast<int>(t.rows.size()) + 4;
  std::string out = absl::StrFormat(
      "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" role=\"img\">",
      width, height, width, height);
  absl::StrAppend(&out, "<title>", Escape(t.metrics[m]), " (mean, 95% CI)</title>",
                  "<text class=\"title\" x=\"0\" y=\"14\">", Escape(t.metrics[m]),
                  "</text>");
  for (size_t i = 0; i < t.rows.size(); ++i) {
    const CompareCell& c = t.rows[i].cells[m];
    const int y = kTop + kRowHeight * static_cast<int>(i);
    const std::string label = RowLabel(t.rows[i]);
    absl::StrAppend(&out, absl::StrFormat("<text x=\"0\" y=\"%d\"><title>%s</title>%s</text>",
                                          y + 16, Escape(label), Escape(FitLabel(label))));
    if (!c.present) continue;
    const double mid = y + 12;
    absl::StrAppend(
        &out,
        absl::StrFormat("<rect class=\"bar%s\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"16\"/>",
                        c.best ? " best" : "", label_width, y + 4, x(c.mean) - label_width),
        absl::StrFormat("<line class=\"ci\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>",
                        x(c.low), mid, x(c.high), mid),
        absl::StrFormat("<line class=\"ci\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>",
                        x(c.low), y + 7, x(c.low), y + 17),
        absl::StrFormat("<line class=\"ci\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>",
                        x(c.high), y + 7, x(c.high), y + 17),
        absl::StrFormat("<text x=\"%d\" y=\"%d\">%.4f</text>", label_width + kBarWidth + 6,
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
      // The mean on one line, its CI under it: keeps the table narrow with many metrics.
      absl::StrAppend(&out, c.best ? "<td class=\"num best\">" : "<td class=\"num\">",
                      c.present ? absl::StrFormat("%.4f<span class=\"ci\">[%.4f, %.4f]</span>",
                                                  c.mean, c.low, c.high)
                                : std::string("-"),
                      "</td>");
    }
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

void AppendFlipRows(const std::vector<Flip>& flips, const char* cls, const char* label,
                    std::string* out) {
  // Long predictions scroll inside a box of fixed height instead of stretching the row.
  auto pre = [](const std::string& text) {
    return absl::StrCat("<td class=\"pre\"><div class=\"clip\">", Escape(text), "</div></td>");
  };
  for (size_t i = 0; i < flips.size() && i < kMaxFlipRows; ++i) {
    const Flip& f = flips[i];
    absl::StrAppend(out, "<tr><td>", Escape(f.id), "</td><td class=\"", cls, "\">", label,
                    absl::StrFormat(" (%.2f &rarr; %.2f)", f.before, f.after), "</td>",
                    pre(f.baseline_prediction), pre(f.prediction), pre(f.reference), "</tr>\n");
  }
  if (flips.size() > kMaxFlipRows) {
    absl::StrAppend(out, "<tr><td colspan=\"5\" class=\"note\">&hellip; and ",
                    flips.size() - kMaxFlipRows, " more ", label,
                    " (all of them: anvil compare --format json)</td></tr>\n");
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
