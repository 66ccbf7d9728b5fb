#include "worker/deploy_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "rpc/job_spec.h"

namespace anvil::worker {
namespace {

namespace fs = std::filesystem;
using std::chrono::steady_clock;

constexpr auto kDrainWait = std::chrono::seconds(45);  // server drains for up to 30 s

std::string FindServerBinary(const std::string& configured) {
  if (!configured.empty()) return configured;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& p : {self.parent_path() / "anvil-server",
                              self.parent_path().parent_path() / "server" / "anvil-server"}) {
      if (fs::exists(p, ec)) return p.string();
    }
  }
  return "anvil-server";  // execvp searches $PATH
}

// The child: stdout (and stderr) on `out_fd`, SIGTERM when the worker dies.
pid_t Spawn(const std::vector<std::string>& argv, int out_fd) {
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) _exit(1);  // the worker died between fork and prctl
  signal(SIGPIPE, SIG_DFL);
  dup2(out_fd, STDOUT_FILENO);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  std::fprintf(stderr, "anvil-worker: cannot run %s: %s\n", args[0], std::strerror(errno));
  _exit(127);
}

std::string ExitDescription(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", strsignal(WTERMSIG(status)));
  return "unknown status";
}

// Forwards complete lines of the child's stdout to the job's log (and our stderr).
class LineForwarder {
 public:
  LineForwarder(int fd, const TaskEnvironment& env) : fd_(fd), env_(env) {}
  // Reads what is there; returns true when the coordinator asked to stop.
  bool Pump() {
    char buf[4096];
    bool stop = false;
    for (;;) {
      const ssize_t n = read(fd_, buf, sizeof(buf));
      if (n <= 0) break;
      pending_.append(buf, static_cast<size_t>(n));
    }
    for (size_t nl; (nl = pending_.find('\n')) != std::string::npos;) {
      const std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      std::fprintf(stderr, "%s\n", line.c_str());
      if (env_.report_log && env_.report_log(line)) stop = true;
    }
    if (pending_.size() > 64 * 1024) pending_.clear();  // no line that long from the server
    return stop;
  }

 private:
  int fd_;
  const TaskEnvironment& env_;
  std::string pending_;
};

}  // namespace

std::vector<std::string> DeployArgv(const std::string& binary, const v1::DeploySpec& spec,
                                    int default_threads) {
  std::vector<std::string> argv = {
      binary,      "--model",
      spec.model(), "--host",
      spec.has_host() ? spec.host() : "127.0.0.1",
      "--port",    absl::StrCat(spec.grpc_port()),
      "--http-port", absl::StrCat(spec.http_port()),
      "--threads", absl::StrCat(spec.has_threads() ? spec.threads() : default_threads)};
  if (spec.has_token_file()) argv.insert(argv.end(), {"--token-file", spec.token_file()});
  if (spec.has_max_running()) {
    argv.insert(argv.end(), {"--max-running", absl::StrCat(spec.max_running())});
  }
  if (spec.has_max_queue()) {
    argv.insert(argv.end(), {"--max-queue", absl::StrCat(spec.max_queue())});
  }
  if (spec.has_matmul()) argv.insert(argv.end(), {"--matmul", spec.matmul()});
  if (spec.has_kv_type()) argv.insert(argv.end(), {"--kv-type", spec.kv_type()});
  // Sorted, so the command line does not depend on the map's order.
  for (const auto& [name, path] :
       std::map<std::string, std::string>(spec.adapters().begin(), spec.adapters().end())) {
    argv.insert(argv.end(), {"--adapter", absl::StrCat(name, "=", path)});
  }
  return argv;
}

TaskOutcome RunDeployTask(const v1::Task& task, const TaskEnvironment& env) {
  TaskOutcome out;
  const v1::DeploySpec& spec = task.spec().deploy();
  if (absl::Status s = rpc::ValidateDeploySpec(spec); !s.ok()) {
    out.status = s;
    return out;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    out.status = absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
    return out;
  }
  const std::vector<std::string> argv =
      DeployArgv(FindServerBinary(env.server_binary), spec, env.threads);
  const pid_t pid = Spawn(argv, fds[1]);
  close(fds[1]);
  if (pid < 0) {
    close(fds[0]);
    out.status = absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    return out;
  }
  fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  LineForwarder lines(fds[0], env);
  bool stopping = false;
  auto stop_deadline = steady_clock::time_point::max();
  int status = 0;
  for (;;) {
    pollfd p{fds[0], POLLIN, 0};
    poll(&p, 1, 200);
    const bool told = lines.Pump();
    const pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (!stopping && (told || (env.should_stop && env.should_stop()))) {
      stopping = true;
      kill(pid, SIGTERM);  // the server drains: health flips, in-flight requests finish
      stop_deadline = steady_clock::now() + kDrainWait;
    }
    if (stopping && steady_clock::now() > stop_deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
  }
  lines.Pump();
  close(fds[0]);
  if (stopping) {
    out.status = absl::CancelledError(absl::StrCat("deployment stopped (anvil-server: ",
                                                   ExitDescription(status), ")"));
  } else {
    out.status = absl::UnavailableError(absl::StrCat(
        "anvil-server (", argv[0], ") ended by itself: ", ExitDescription(status)));
  }
  return out;
}

}  // namespace anvil::worker
