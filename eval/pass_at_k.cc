// pass@k: extract the code, write it into a fresh directory, fill the check command's
// placeholders, run it in the sandbox, score exit status 0 as a pass. Also the task file's
// `check` section reader and the unbiased pass@k estimator.
#include "eval/pass_at_k.h"

#include <yaml-cpp/yaml.h>

#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "eval/prompt.h"
#include "kernels/core/status_macros.h"
#include "train/yaml_fields.h"

namespace anvil::eval {

namespace {
// Our abseil's string_view is not std::string_view.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
}  // namespace

std::string ExtractCodeBlock(std::string_view answer) {
  const size_t open = answer.find("```");
  if (open == std::string_view::npos) return std::string(absl::StripAsciiWhitespace(Absl(answer)));
  size_t body = answer.find('\n', open);  // the rest of the fence line is a language tag
  if (body == std::string_view::npos) return "";
  ++body;
  const size_t close = answer.find("```", body);
  const std::string_view code =
      answer.substr(body, close == std::string_view::npos ? std::string_view::npos : close - body);
  return std::string(absl::StripTrailingAsciiWhitespace(Absl(code))) + "\n";
}

absl::StatusOr<CodeCheckResult> CheckCodeAnswer(const CodeCheckSpec& spec, std::string_view answer,
                                                const std::map<std::string, std::string>& fields) {
  if (spec.command.empty()) return absl::InvalidArgumentError("pass_at_1: no check command");
  ANVIL_ASSIGN_OR_RETURN(TempDir dir, TempDir::Create("anvil-check-"));
  CodeCheckResult r;
  r.code = spec.code_block ? ExtractCodeBlock(answer) : std::string(answer);
  const std::string answer_path = absl::StrCat(dir.path(), "/", spec.answer_file);
  {
    std::ofstream out(answer_path, std::ios::binary);
    out << r.code;
    if (!out.good()) return absl::InternalError(absl::StrCat("cannot write ", answer_path));
  }
  std::map<std::string, std::string> vars = fields;
  vars["answer_file"] = answer_path;
  vars["dir"] = dir.path();
  std::vector<std::string> argv;
  for (size_t i = 0; i < spec.command.size(); ++i) {
    absl::StatusOr<std::string> arg = FillTemplate(spec.command[i], vars);
    if (!arg.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("check.command[", i, "]: ", arg.status().message()));
    }
    argv.push_back(*std::move(arg));
  }
  ANVIL_ASSIGN_OR_RETURN(r.run, RunSandboxed(argv, dir.path(), spec.limits));
  r.passed = r.run.passed();
  return r;
}

absl::StatusOr<double> PassAt1(const CodeCheckSpec& spec, std::string_view answer,
                               const std::map<std::string, std::string>& fields) {
  ANVIL_ASSIGN_OR_RETURN(CodeCheckResult r, CheckCodeAnswer(spec, answer, fields));
  return r.passed ? 1.0 : 0.0;
}

absl::StatusOr<double> PassAtK(int64_t n, int64_t c, int64_t k) {
  if (n < 1 || c < 0 || c > n || k < 1 || k > n) {
    return absl::InvalidArgumentError(
        absl::StrCat("pass@k needs 0 <= c <= n and 1 <= k <= n; got n=", n, " c=", c, " k=", k));
  }
  if (n - c < k) return 1.0;
  // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
  double fail = 1.0;
  for (int64_t i = n - c + 1; i <= n; ++i) fail *= 1.0 - static_cast<double>(k) / i;
  return 1.0 - fail;
}

void ReadCodeCheck(train::Section& metric, train::Errors* errors, const std::string& path,
                   bool wanted, CodeCheckSpec* out) {
  const YAML::Node raw = metric.Raw("check");
  if (!raw.IsDefined()) {
    if (wanted) {
      errors->Add(nullptr, absl::StrCat(path, ".check"),
                  "missing (pass_at_1 needs check.command, an argv list)");
    }
    return;
  }
  if (!wanted) {
    errors->Add(metric.KeyNode("check"), absl::StrCat(path, ".check"), "only for pass_at_1");
    return;
  }
  train::Section check = metric.Child("check");
  const std::string cpath = absl::StrCat(path, ".check");
  const YAML::Node cmd = check.Raw("command");
  if (!cmd.IsDefined()) {
    errors->Add(&raw, absl::StrCat(cpath, ".command"), "missing (an argv list: [python3, ...])");
  } else if (!cmd.IsSequence() || cmd.size() == 0) {
    errors->Add(&cmd, absl::StrCat(cpath, ".command"),
                absl::StrCat("expected a non-empty list of strings, got ", train::Describe(cmd)));
  } else {
    for (size_t i = 0; i < cmd.size(); ++i) {
      const YAML::Node item = cmd[i];
      const std::string ipath = absl::StrCat(cpath, ".command[", i, "]");
      if (!item.IsScalar() || item.IsNull() || (i == 0 && item.Scalar().empty())) {
        errors->Add(&item, ipath, absl::StrCat("expected a string, got ", train::Describe(item)));
        continue;
      }
      if (absl::StatusOr<std::vector<std::string>> v = TemplateVariables(item.Scalar()); !v.ok()) {
        errors->Add(&item, ipath, std::string(v.status().message()));
      }
      out->command.push_back(item.Scalar());
    }
  }
  check.String("answer_file", &out->answer_file);
  check.Bool("code_block", &out->code_block);
  SandboxLimits& l = out->limits;
  int64_t mb = l.address_space_bytes >> 20, fs_mb = l.file_size_bytes >> 20;
  int64_t out_kb = l.output_bytes >> 10;
  check.Number("timeout_s", &l.timeout_seconds, train::Range{0, 3600, true, false});
  check.Int("cpu_s", &l.cpu_seconds, 1, 3600);
  check.Int("memory_mb", &mb, 16, int64_t{1} << 20);
  check.Int("file_size_mb", &fs_mb, 1, int64_t{1} << 20);
  check.Int("processes", &l.max_processes, 1, 4096);
  check.Int("open_files", &l.max_open_files, 8, 65536);
  check.Int("output_kb", &out_kb, 1, int64_t{1} << 20);
  check.Bool("isolate_network", &l.isolate_network);
  check.Finish();
  l.address_space_bytes = mb << 20;
  l.file_size_bytes = fs_mb << 20;
  l.output_bytes = out_kb << 10;
  const std::string& f = out->answer_file;
  if (f.find('/') != std::string::npos || f == "." || f == "..") {
    errors->Add(check.KeyNode("answer_file"), absl::StrCat(cpath, ".answer_file"),
                "must be a plain file name (no '/')");
  }
}

}  // namespace anvil::eval
