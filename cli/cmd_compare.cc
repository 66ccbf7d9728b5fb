// anvil compare RESULTS.json...: loads eval result files (from `anvil eval --out`), groups them
// by task and renders the side-by-side comparison (eval/compare.h) as a terminal table,
// Markdown, JSON or a self-contained HTML page, to stdout or --out.
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "eval/compare.h"
#include "kernels/core/status_macros.h"
#include "model/file_io.h"

namespace anvil::cli {
namespace {

absl::StatusOr<std::string> Render(const eval::Comparison& c, const std::string& format) {
  if (format == "table") return eval::RenderTable(c);
  if (format == "markdown") return eval::RenderMarkdown(c);
  if (format == "json") return eval::RenderJson(c);
  if (format == "html") return eval::RenderHtml(c);
  return absl::InvalidArgumentError(
      absl::StrCat("--format must be table, markdown, json or html, got '", format, "'"));
}

}  // namespace

Command CompareCommand() {
  Command c;
  c.spec = {"compare",
            "Compares eval result files (anvil eval --out) side by side: per task, one row per "
            "model and prompt strategy with mean and 95% CI per metric, the best marked, and "
            "the examples that flipped against the first file.",
            {"RESULTS..."},
            {{"format", "FORMAT", "table", "table, markdown, json or html"},
             {"out", "PATH", "", "write the report here instead of stdout"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(eval::Comparison comparison,
                           eval::CompareResultFiles(args.positionals()));
    ANVIL_ASSIGN_OR_RETURN(std::string text, Render(comparison, args.Get("format")));
    if (args.Get("out").empty()) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      return absl::OkStatus();
    }
    return WriteFileAtomically(args.Get("out"), text);
  };
  return c;
}

}  // namespace anvil::cli
