// The result file of a task run. Written by hand rather than through a JSON library so the bytes
// are fixed: keys in the order below, floats as "%.6f", one example per line, no timestamps.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/harness.h"
#include "nlohmann/json.hpp"

namespace anvil::eval {
namespace {

std::string Str(const std::string& s) {
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
std::string Num(double v) { return std::isfinite(v) ? absl::StrFormat("%.6f", v) : "null"; }

std::string Examples(const std::vector<ExampleResult>& examples) {
  std::string out = "[";
  for (size_t i = 0; i < examples.size(); ++i) {
    const ExampleResult& e = examples[i];
    absl::StrAppend(&out, i == 0 ? "\n" : ",\n", "    {\"id\": ", Str(e.id),
                    ", \"prediction\": ", Str(e.prediction), ", \"reference\": ",
                    Str(e.reference));
    if (!e.output.empty()) absl::StrAppend(&out, ", \"output\": ", Str(e.output));
    absl::StrAppend(&out, ", \"scores\": {");
    for (size_t m = 0; m < e.scores.size(); ++m) {
      absl::StrAppend(&out, m == 0 ? "" : ", ", Str(e.scores[m].first), ": ",
                      Num(e.scores[m].second));
    }
    absl::StrAppend(&out, "}");
    if (!e.loglikelihoods.empty()) {
      absl::StrAppend(&out, ", \"loglikelihoods\": [");
      for (size_t c = 0; c < e.loglikelihoods.size(); ++c) {
        absl::StrAppend(&out, c == 0 ? "" : ", ", Num(e.loglikelihoods[c]));
      }
      absl::StrAppend(&out, "]");
    }
    absl::StrAppend(&out, "}");
  }
  absl::StrAppend(&out, examples.empty() ? "]" : "\n  ]");
  return out;
}

}  // namespace

std::string ResultsJson(const TaskResult& r) {
  std::string out = "{\n  \"format\": \"anvil-eval-results/1\",\n";
  absl::StrAppend(&out, "  \"task\": {\"name\": ", Str(r.task_name), ", \"file\": ",
                  Str(r.task_file), ", \"kind\": ", Str(r.kind), "},\n");
  absl::StrAppend(&out, "  \"data\": {\"file\": ", Str(r.data_file), ", \"sha256\": ",
                  Str(r.data_sha256), ", \"examples\": ", r.examples.size(), "},\n");
  absl::StrAppend(&out, "  \"model\": ", Str(r.model), ",\n");
  if (!r.strategy.empty()) {
    absl::StrAppend(&out, "  \"prompt\": {\"name\": ", Str(r.prompt_name), ", \"strategy\": ",
                    Str(r.strategy), ", \"sha256\": ", Str(r.prompt_hash), "},\n");
  }
  if (r.max_tokens > 0) {
    absl::StrAppend(&out, "  \"generation\": {\"max_tokens\": ", r.max_tokens,
                    ", \"temperature\": ", Num(r.temperature), ", \"seed\": ", r.seed, "},\n");
  }
  if (r.perplexity) {
    const PerplexitySummary& p = *r.perplexity;
    absl::StrAppend(&out, "  \"perplexity\": {\"ppl\": ", Num(p.ppl), ", \"uncertainty\": ",
                    Num(p.uncertainty), ", \"mean_nll\": ", Num(p.mean_nll), ", \"ctx\": ", p.ctx,
                    ", \"chunks\": ", p.chunks, ", \"scored_tokens\": ", p.scored_tokens,
                    ", \"running_ppl\": [");
    for (size_t i = 0; i < p.running_ppl.size(); ++i) {
      absl::StrAppend(&out, i == 0 ? "" : ", ", Num(p.running_ppl[i]));
    }
    absl::StrAppend(&out, "]},\n");
  }
  absl::StrAppend(&out, "  \"metrics\": {");
  for (size_t i = 0; i < r.metrics.size(); ++i) {
    const MetricSummary& m = r.metrics[i];
    absl::StrAppend(&out, i == 0 ? "\n" : ",\n", "    ", Str(m.name), ": {\"mean\": ",
                    Num(m.ci.mean), ", \"ci95_low\": ", Num(m.ci.low), ", \"ci95_high\": ",
                    Num(m.ci.high), ", \"n\": ", m.n, "}");
  }
  absl::StrAppend(&out, r.metrics.empty() ? "},\n" : "\n  },\n");
  absl::StrAppend(&out, "  \"examples\": ", Examples(r.examples), "\n}\n");
  return out;
}

}  // namespace anvil::eval
