// pass@1 for code answers: the sandbox (passing and failing commands, a timeout that kills a
// `sleep 100` and its grandchildren, a fork bomb and a memory hog contained, huge output capped,
// clean env, cwd, stdin, no network, a missing command as a clear error), the task file's
// `check` section, and the shipped code-py task whose 20 reference solutions must all pass and
// whose wrong answers must all fail. Everything runs real processes (python3, sh, sleep).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "eval/pass_at_k.h"
#include "eval/sandbox.h"
#include "eval/task.h"
#include "tests/testing/status_matchers.h"

namespace anvil::eval {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

// A process that is gone or a zombie (PID 1 of a container may not reap orphans) no longer runs.
bool RunningNow(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return false;
  std::string line;
  std::getline(in, line);
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z' &&
         line[paren + 2] != 'X';
}

// SIGKILL is delivered asynchronously: give a killed process up to 2 s to finish dying (a
// survivor would run its full 100 s).
bool Running(pid_t pid) {
  for (int i = 0; i < 200 && RunningNow(pid); ++i) usleep(10000);
  return RunningNow(pid);
}

// CAP_SYS_ADMIN (bit 21) in the effective set: what unshare(CLONE_NEWNET) needs. Containers
// often run root without it; the sandbox then runs without network isolation and says so.
bool HasCapSysAdmin() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) == 0) {
      return (std::stoull(line.substr(7), nullptr, 16) >> 21) & 1;
    }
  }
  return false;
}

struct SandboxCase {
  const char* name;
  std::vector<std::string> argv;
  double timeout_s = 10;
  int64_t cpu_s = 10, memory_mb = 512, processes = 16, output_bytes = 64 << 10;
  bool passed = false;
  bool exited = true;
  int exit_code = 0;
  int term_signal = 0;  // -1: any signal (SIGXCPU or SIGKILL)
  bool timed_out = false;
  double max_seconds = 10;
  const char* output_has = "";
  bool truncated = false;
};

class SandboxTest : public ::testing::TestWithParam<SandboxCase> {};

TEST_P(SandboxTest, RunsContained) {
  const SandboxCase& c = GetParam();
  absl::StatusOr<TempDir> dir = TempDir::Create("anvil-sandbox-test-");
  ASSERT_THAT(dir, IsOk());
  SandboxLimits l;
  l.timeout_seconds = c.timeout_s;
  l.cpu_seconds = c.cpu_s;
  l.address_space_bytes = c.memory_mb << 20;
  l.max_processes = c.processes;
  l.output_bytes = c.output_bytes;
  absl::StatusOr<SandboxResult> r = RunSandboxed(c.argv, dir->path(), l);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->passed(), c.passed) << r->output;
  EXPECT_EQ(r->exited, c.exited) << r->output;
  if (c.exited) {
    EXPECT_EQ(r->exit_code, c.exit_code) << r->output;
  }
  if (c.term_signal > 0) {
    EXPECT_EQ(r->term_signal, c.term_signal);
  }
  if (c.term_signal < 0) {
    EXPECT_TRUE(r->term_signal == SIGKILL || r->term_signal == SIGXCPU) << r->term_signal;
  }
  EXPECT_EQ(r->timed_out, c.timed_out);
  EXPECT_LT(r->seconds, c.max_seconds);
  EXPECT_THAT(r->output, HasSubstr(c.output_has));
  EXPECT_EQ(r->output_truncated, c.truncated);
  EXPECT_LE(r->output.size(), static_cast<size_t>(c.output_bytes));
}

const char kForkBomb[] =
    "import os\n"
    "while True:\n"
    "    try:\n"
    "        os.fork()\n"
    "    except OSError:\n"
    "        pass\n";

INSTANTIATE_TEST_SUITE_P(
    Cases, SandboxTest,
    ::testing::Values(
        SandboxCase{.name = "passes", .argv = {"python3", "-c", "print('ok')"}, .passed = true,
                    .output_has = "ok\n"},
        SandboxCase{.name = "fails", .argv = {"python3", "-c", "import sys; sys.exit(3)"},
                    .exit_code = 3},
        SandboxCase{.name = "assertion",
                    .argv = {"python3", "-c", "assert 1 + 1 == 3, 'wrong sum'"},
                    .exit_code = 1, .output_has = "AssertionError: wrong sum"},
        SandboxCase{.name = "sleep_killed_at_timeout", .argv = {"sleep", "100"}, .timeout_s = 1,
                    .exited = false, .term_signal = SIGKILL, .timed_out = true,
                    .max_seconds = 5},
        SandboxCase{.name = "fork_bomb_contained", .argv = {"python3", "-c", kForkBomb},
                    .timeout_s = 2, .processes = 8, .exited = false, .term_signal = SIGKILL,
                    .timed_out = true, .max_seconds = 8},
        SandboxCase{.name = "memory_hog_refused",
                    .argv = {"python3", "-c", "x = bytearray(2 << 30)"}, .memory_mb = 256,
                    .exit_code = 1, .output_has = "MemoryError"},
        SandboxCase{.name = "growing_memory_hog_refused",
                    .argv = {"python3", "-c", "x = []\nwhile True:\n    x.append(' ' * 10**6)"},
                    .memory_mb = 256, .exit_code = 1, .output_has = "MemoryError"},
        SandboxCase{.name = "cpu_limit", .argv = {"python3", "-c", "while True:\n    pass"},
                    .timeout_s = 60, .cpu_s = 1, .exited = false, .term_signal = -1,
                    .max_seconds = 60},
        SandboxCase{.name = "huge_output_truncated",
                    .argv = {"python3", "-c", "import sys; sys.stdout.write('x' * 5000000)"},
                    .output_bytes = 1000, .passed = true, .output_has = "xxxxxxxxxx",
                    .truncated = true},
        SandboxCase{.name = "clean_environment",
                    .argv = {"python3", "-c", "import os; print(sorted(os.environ))"},
                    .passed = true, .output_has = "['HOME', 'LANG', 'PATH', 'TMPDIR']"},
        SandboxCase{.name = "stdin_is_empty",
                    .argv = {"python3", "-c", "import sys; print(repr(sys.stdin.read()))"},
                    .passed = true, .output_has = "''\n"}),
    [](const ::testing::TestParamInfo<SandboxCase>& info) { return info.param.name; });

TEST(SandboxTest, MissingCommandIsNotFound) {
  absl::StatusOr<TempDir> dir = TempDir::Create("anvil-sandbox-test-");
  ASSERT_THAT(dir, IsOk());
  EXPECT_THAT(RunSandboxed({"anvil-no-such-check-command", "x"}, dir->path(), {}),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("check command \"anvil-no-such-check-command\" not found on "
                                 "PATH /usr/local/bin:/usr/bin:/bin")));
  EXPECT_THAT(RunSandboxed({"/nonexistent/python3"}, dir->path(), {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("is not an executable file")));
  EXPECT_THAT(RunSandboxed({}, dir->path(), {}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(SandboxTest, BadWorkingDirectoryIsFailedPrecondition) {
  EXPECT_THAT(RunSandboxed({"true"}, "/nonexistent-anvil-dir", {}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("working directory /nonexistent-anvil-dir is not a directory")));
}

// A background grandchild that holds the output pipe open dies with the group.
TEST(SandboxTest, GrandchildrenDieWithTheGroup) {
  absl::StatusOr<TempDir> dir = TempDir::Create("anvil-sandbox-test-");
  ASSERT_THAT(dir, IsOk());
  SandboxLimits l;
  l.timeout_seconds = 10;
  absl::StatusOr<SandboxResult> r =
      RunSandboxed({"sh", "-c", "sleep 100 & echo $!"}, dir->path(), l);
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->passed()) << r->output;
  EXPECT_LT(r->seconds, 5);
  const pid_t child = std::stoi(r->output);
  EXPECT_FALSE(Running(child)) << "pid " << child << " outlived the sandbox";
}

TEST(SandboxTest, RunsInItsDirectoryWithoutNetwork) {
  absl::StatusOr<TempDir> dir = TempDir::Create("anvil-sandbox-test-");
  ASSERT_THAT(dir, IsOk());
  absl::StatusOr<SandboxResult> r = RunSandboxed(
      {"python3", "-c",
       "import os, socket\nprint(os.getcwd())\nopen('f.txt', 'w').write('x')\n"
       "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=3)\n    print('online')\n"
       "except OSError as e:\n    print('offline', e.errno)\n"},
      dir->path(), {});
  ASSERT_THAT(r, IsOk());
  EXPECT_TRUE(r->passed()) << r->output;
  EXPECT_THAT(r->output, HasSubstr(dir->path() + "\n"));
  EXPECT_TRUE(std::filesystem::exists(dir->path() + "/f.txt"));
  EXPECT_EQ(r->dropped_privileges, geteuid() == 0);
  if (geteuid() == 0 && HasCapSysAdmin()) {
    EXPECT_TRUE(r->network_isolated);  // such a root can always make a network namespace
  }
  if (r->network_isolated) {
    EXPECT_THAT(r->output, HasSubstr("offline"));
  }
}

TEST(CodeBlockTest, ExtractsTheFirstFencedBlock) {
  EXPECT_EQ(ExtractCodeBlock("def f():\n  return 1\n\n"), "def f():\n  return 1");
  EXPECT_EQ(ExtractCodeBlock("Here:\n```python\nx = 1\n```\nthen\n```\ny\n```"), "x = 1\n");
  EXPECT_EQ(ExtractCodeBlock("```\nx = 2\n"), "x = 2\n");  // unclosed: to the end
  EXPECT_EQ(ExtractCodeBlock("```"), "");
  EXPECT_EQ(ExtractCodeBlock(""), "");
}

TEST(PassAtKTest, UnbiasedEstimator) {
  EXPECT_DOUBLE_EQ(*PassAtK(10, 3, 1), 0.3);
  EXPECT_DOUBLE_EQ(*PassAtK(5, 0, 2), 0.0);
  EXPECT_DOUBLE_EQ(*PassAtK(4, 2, 2), 1.0 - 1.0 / 6.0);  // 1 - C(2,2)/C(4,2)
  EXPECT_DOUBLE_EQ(*PassAtK(4, 3, 2), 1.0);              // n - c < k
  EXPECT_THAT(PassAtK(3, 4, 1), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PassAtK(3, 1, 4), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PassAtK(0, 0, 1), StatusIs(absl::StatusCode::kInvalidArgument));
}

absl::StatusOr<Task> CodeTask() {
  return LoadTask(std::string(ANVIL_SOURCE_DIR) + "/tasks/code-py.yaml");
}

// The shipped task: every reference passes its own test through the task's check, and a wrong,
// a hanging and a missing answer all fail.
TEST(CodeTaskTest, ReferencesPassAndWrongAnswersFail) {
  absl::StatusOr<Task> task = CodeTask();
  ASSERT_THAT(task, IsOk());
  ASSERT_EQ(task->metrics.size(), 1u);
  const MetricSpec& m = task->metrics[0];
  EXPECT_EQ(m.kind, MetricKind::kPassAt1);
  EXPECT_EQ(m.name, "pass_at_1");
  EXPECT_EQ(m.check.limits.timeout_seconds, 10);
  EXPECT_EQ(m.check.limits.address_space_bytes, int64_t{512} << 20);
  // data/ is not in git: make the records the way the docs do, into a temporary directory.
  absl::StatusOr<TempDir> dir = TempDir::Create("anvil-code-data-");
  ASSERT_THAT(dir, IsOk());
  const std::string gen = std::string("python3 ") + ANVIL_SOURCE_DIR +
                          "/scripts/data/make_code.py --out " + dir->path() + " >/dev/null";
  ASSERT_EQ(std::system(gen.c_str()), 0) << gen;
  absl::StatusOr<std::vector<Example>> data = LoadExamples(
      dir->path() + "/test.jsonl", task->data, task->kind, task->prompt.user);
  ASSERT_THAT(data, IsOk());
  ASSERT_EQ(data->size(), 20u);
  for (const Example& ex : *data) {
    const std::string fenced = "Sure:\n```python\n" + ex.reference + "```\nDone.";
    EXPECT_EQ(PassAt1(m.check, fenced, ex.fields).value_or(-1), 1.0) << ex.id;
    EXPECT_EQ(PassAt1(m.check, "def unrelated():\n    pass\n", ex.fields).value_or(-1), 0.0)
        << ex.id;
  }
  CodeCheckSpec fast = m.check;
  fast.limits.timeout_seconds = 1;
  absl::StatusOr<CodeCheckResult> hang =
      CheckCodeAnswer(fast, "```python\nimport time\ntime.sleep(100)\n```", (*data)[0].fields);
  ASSERT_THAT(hang, IsOk());
  EXPECT_FALSE(hang->passed);
  EXPECT_TRUE(hang->run.timed_out);
  EXPECT_LT(hang->run.seconds, 5);
}

TEST(CodeTaskTest, PlaceholdersAndCleanup) {
  CodeCheckSpec spec;
  spec.command = {"sh", "-c", "cat \"$1\"; echo; echo \"$2\"; pwd", "sh", "{answer_file}",
                  "{expected}"};
  spec.answer_file = "a.txt";
  absl::StatusOr<CodeCheckResult> r = CheckCodeAnswer(spec, "hello", {{"expected", "42"}});
  ASSERT_THAT(r, IsOk());
  ASSERT_TRUE(r->passed) << r->run.output;
  EXPECT_THAT(r->run.output, ::testing::StartsWith("hello\n42\n/"));
  // The last line is the working directory: the temporary one, gone once the check is over.
  const std::string cwd = r->run.output.substr(std::string("hello\n42\n").size());
  ASSERT_FALSE(cwd.empty());
  EXPECT_FALSE(std::filesystem::exists(cwd.substr(0, cwd.size() - 1)))
      << "the temporary directory " << cwd << " was not removed";
  EXPECT_THAT(CheckCodeAnswer(spec, "hello", {{"other", "1"}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("check.command[5]: no field \"expected\" in the record")));
  spec.command = {"anvil-no-such-check-command"};
  EXPECT_THAT(PassAt1(spec, "x", {}), StatusIs(absl::StatusCode::kNotFound));
}

absl::Status ParseStatus(const std::string& metrics) {
  const std::string yaml = "name: t\nkind: generate\ndata: {path: d.jsonl, format: fields}\n"
                           "metrics:\n" + metrics;
  return ParseTask(yaml, "t.yaml", "/base").status();
}

TEST(CodeTaskTest, BadCheckSectionsNameLineAndField) {
  EXPECT_THAT(ParseStatus("  - kind: pass_at_1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml: metrics[0].check: missing (pass_at_1 needs "
                                 "check.command, an argv list)")));
  EXPECT_THAT(ParseStatus("  - kind: exact_match\n    check: {command: [x]}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml:6:5: metrics[0].check: only for pass_at_1")));
  EXPECT_THAT(ParseStatus("  - kind: pass_at_1\n    check: {command: python3}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml:6:22: metrics[0].check.command: expected a non-empty "
                                 "list of strings, got \"python3\"")));
  EXPECT_THAT(ParseStatus("  - kind: pass_at_1\n    check:\n      command: [python3, '{x']\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("t.yaml:7:26: metrics[0].check.command[1]: '{' at offset 0")));
  EXPECT_THAT(ParseStatus("  - kind: pass_at_1\n    check:\n      command: [python3]\n"
                          "      answer_file: ../a.py\n      timeout_s: 0\n      colour: red\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(
                           HasSubstr("t.yaml:8:7: metrics[0].check.answer_file: must be a plain "
                                     "file name"),
                           HasSubstr("t.yaml:9:18: metrics[0].check.timeout_s: must be in (0, "
                                     "3600], got 0"),
                           HasSubstr("t.yaml:10:7: metrics[0].check.colour: unknown field"))));
}

}  // namespace
}  // namespace anvil::eval
