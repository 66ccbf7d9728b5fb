// Running an untrusted command (a code answer's check) in a sandboxed subprocess: its own process
// group, a wall-clock timeout that SIGKILLs the whole group, rlimits (CPU seconds, address space,
// file size, processes, open files, no core files), a clean environment, a working directory the
// caller owns, stdin /dev/null, stdout+stderr captured up to a cap. When run as root the child
// also leaves the network namespace (CLONE_NEWNET) and drops to `nobody` so RLIMIT_NPROC counts
// only its own processes; as another user it tries an unprivileged user+network namespace. What
// the sandbox does NOT do (no seccomp, no filesystem isolation beyond permissions, no cgroup
// memory accounting) is written in docs/EVALUATION.md. What to run and how to score it is
// pass_at_k.h's job.
#ifndef ANVIL_EVAL_SANDBOX_H_
#define ANVIL_EVAL_SANDBOX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace anvil::eval {

struct SandboxLimits {
  double timeout_seconds = 10;                  // wall clock; then SIGKILL to the process group
  int64_t cpu_seconds = 10;                     // RLIMIT_CPU (SIGXCPU, then SIGKILL)
  int64_t address_space_bytes = int64_t{1} << 30;  // RLIMIT_AS
  int64_t file_size_bytes = int64_t{16} << 20;  // RLIMIT_FSIZE (SIGXFSZ past it)
  int64_t max_processes = 32;                   // RLIMIT_NPROC (see the header comment)
  int64_t max_open_files = 64;                  // RLIMIT_NOFILE
  int64_t output_bytes = 64 << 10;              // stdout+stderr kept; the rest is read and dropped
  bool isolate_network = true;                  // try a fresh network namespace (best effort)
};

struct SandboxResult {
  bool exited = false;   // ended by exit(); exit_code holds its status
  int exit_code = -1;
  int term_signal = 0;   // the signal that ended it (SIGKILL after a timeout)
  bool timed_out = false;
  std::string output;    // stdout and stderr interleaved, at most output_bytes
  bool output_truncated = false;
  bool network_isolated = false;  // the command ran without network access
  bool dropped_privileges = false;  // ran as nobody (the caller was root)
  double seconds = 0;
  // True when the command exited with status 0 within its limits.
  bool passed() const { return exited && exit_code == 0 && !timed_out; }
};

// The PATH a sandboxed command sees and is looked up in.
inline constexpr char kSandboxPath[] = "/usr/local/bin:/usr/bin:/bin";

// Runs argv (argv[0] looked up in kSandboxPath unless it contains '/') in `dir`, which must
// exist; as root, `dir` is handed to nobody first. The environment is only PATH, HOME=dir,
// TMPDIR=dir, LANG=C.UTF-8. NotFound when argv[0] is not an executable on kSandboxPath;
// InvalidArgument for an empty argv or a NUL inside an argument; FailedPrecondition when `dir`
// is not a directory or the child could not be set up (the message names the step and errno); Internal when fork or a pipe
// fails. A command that runs and fails is an OK result with passed() false.
absl::StatusOr<SandboxResult> RunSandboxed(const std::vector<std::string>& argv,
                                           const std::string& dir, const SandboxLimits& limits);

// A fresh private directory under $TMPDIR (else /tmp) for one run, removed with everything in it
// when the object dies.
class TempDir {
 public:
  static absl::StatusOr<TempDir> Create(const std::string& prefix);
  TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
  TempDir& operator=(TempDir&&) = delete;
  TempDir(const TempDir&) = delete;
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_SANDBOX_H_
