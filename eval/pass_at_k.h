// pass@k for code answers: an answer passes when a user-supplied check command, run on it in the
// sandbox (sandbox.h), exits 0. The task file names the command as an argv list (metric kind
// pass_at_1, section `check`); the answer (its first fenced code block, by default) is written to
// `answer_file` in a fresh temporary directory that is the command's working directory and is
// removed afterwards. Placeholders in the argv: {answer_file} (its absolute path), {dir} (the
// directory), and {FIELD} for any field of the JSONL record (the tests, inputs, expected
// outputs). Parsing the `check` section lives here too, so task.cc only calls ReadCodeCheck.
#ifndef ANVIL_EVAL_PASS_AT_K_H_
#define ANVIL_EVAL_PASS_AT_K_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/sandbox.h"

namespace anvil::train {
class Errors;
class Section;
}  // namespace anvil::train

namespace anvil::eval {

struct CodeCheckSpec {
  std::vector<std::string> command;        // argv with {placeholders}; command[0] on kSandboxPath
  std::string answer_file = "answer.py";   // a plain file name inside the temporary directory
  bool code_block = true;                  // score the first ``` fenced block if there is one
  SandboxLimits limits;
};

struct CodeCheckResult {
  bool passed = false;
  SandboxResult run;
  std::string code;  // what was written to answer_file
};

// The first ``` fenced block of `answer` (the fence's language tag dropped), or the whole answer,
// trimmed, when there is none. An unclosed fence runs to the end.
std::string ExtractCodeBlock(std::string_view answer);

// Runs the check of `spec` on `answer` with the record's `fields`. InvalidArgument naming a
// placeholder that is not a field; NotFound / FailedPrecondition from the sandbox when the
// command cannot be started (an error, not a failed answer).
absl::StatusOr<CodeCheckResult> CheckCodeAnswer(const CodeCheckSpec& spec, std::string_view answer,
                                                const std::map<std::string, std::string>& fields);

// 1.0 when the answer passes its check, else 0.0: the per-example score of metric pass_at_1.
absl::StatusOr<double> PassAt1(const CodeCheckSpec& spec, std::string_view answer,
                               const std::map<std::string, std::string>& fields);

// The unbiased estimator of pass@k from n samples of which c passed (Chen et al. 2021):
// 1 - C(n-c, k) / C(n, k), computed as a product to stay finite. InvalidArgument unless
// 0 <= c <= n and 1 <= k <= n.
absl::StatusOr<double> PassAtK(int64_t n, int64_t c, int64_t k);

// Reads metric `path`'s `check` section from `metric` (task.cc's metric list). `wanted` is true
// for kind pass_at_1, which requires it; other kinds must not have one.
void ReadCodeCheck(train::Section& metric, train::Errors* errors, const std::string& path,
                   bool wanted, CodeCheckSpec* out);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_PASS_AT_K_H_
