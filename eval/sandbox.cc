// The sandboxed subprocess: fork, then in the child only async-signal-safe calls (the parent may
// have threads) until execve; a CLOEXEC status pipe tells the parent whether the network was cut
// off and which setup step failed, and reads EOF once execve succeeded. The parent reads the
// merged stdout/stderr pipe with poll() against the deadline, kills the whole process group at
// the deadline or as soon as the leader ends (so no grandchild outlives the check), and only then
// reaps the leader, which keeps the group id from being reused while it is signalled.
#include "eval/sandbox.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace anvil::eval {
namespace {

constexpr uid_t kNobody = 65534;

// Setup steps the child reports on the status pipe.
enum Step : int32_t {
  kNetwork = 1,  // value: 1 when the network namespace is the child's own
  kDropped,      // value: 1 when it runs as nobody
  kFailDup,      // the rest: a failure, value = errno
  kFailRlimit,
  kFailPrivileges,
  kFailChdir,
  kFailExec,
};
struct Message {
  int32_t step;
  int32_t value;
};

const char* StepName(int32_t step) {
  switch (step) {
    case kFailDup: return "redirecting stdin/stdout/stderr";
    case kFailRlimit: return "setting the resource limits";
    case kFailPrivileges: return "dropping privileges to nobody";
    case kFailChdir: return "entering the working directory";
    case kFailExec: return "executing the command";
    default: return "setting up the child";
  }
}

void Report(int fd, int32_t step, int32_t value) {
  const Message m{step, value};
  ssize_t ignored = write(fd, &m, sizeof m);
  (void)ignored;
}

[[noreturn]] void Fail(int fd, int32_t step) {
  Report(fd, step, errno);
  _exit(127);
}

// Writes `text` to an already-open /proc file; async-signal-safe.
bool WriteProcFile(const char* path, const char* text) {
  const int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n == static_cast<ssize_t>(strlen(text));
}

// Everything the child needs, prepared before fork so the child allocates nothing.
struct ChildPlan {
  std::string exe, dir;
  std::vector<std::string> args, env;
  std::vector<char*> argv, envp;
  std::string uid_map, gid_map;  // unprivileged user namespace: map ourselves to ourselves
  bool root = false;
  SandboxLimits limits;
  int devnull = -1, out_w = -1, status_w = -1;
};

bool SetLimit(int resource, int64_t soft, int64_t hard) {
  const rlimit r{static_cast<rlim_t>(soft), static_cast<rlim_t>(hard)};
  return setrlimit(resource, &r) == 0;
}

[[noreturn]] void RunChild(const ChildPlan& p) {
  const int st = p.status_w;
  setpgid(0, 0);
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGXCPU, SIGXFSZ, SIGCHLD}) sigaction(sig, &dfl, nullptr);
  if (dup2(p.devnull, 0) < 0 || dup2(p.out_w, 1) < 0 || dup2(p.out_w, 2) < 0) Fail(st, kFailDup);
  bool net = false;
  if (p.limits.isolate_network) {
    if (p.root) {
      net = unshare(CLONE_NEWNET) == 0;
    } else if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
      net = WriteProcFile("/proc/self/setgroups", "deny") &&
            WriteProcFile("/proc/self/uid_map", p.uid_map.c_str()) &&
            WriteProcFile("/proc/self/gid_map", p.gid_map.c_str());
      if (!net) Fail(st, kFailPrivileges);
    }
  }
  Report(st, kNetwork, net ? 1 : 0);
  const SandboxLimits& l = p.limits;
  if (!SetLimit(RLIMIT_CPU, l.cpu_seconds, l.cpu_seconds + 1) ||
      !SetLimit(RLIMIT_AS, l.address_space_bytes, l.address_space_bytes) ||
      !SetLimit(RLIMIT_FSIZE, l.file_size_bytes, l.file_size_bytes) ||
      !SetLimit(RLIMIT_NPROC, l.max_processes, l.max_processes) ||
      !SetLimit(RLIMIT_NOFILE, l.max_open_files, l.max_open_files) ||
      !SetLimit(RLIMIT_CORE, 0, 0)) {
    Fail(st, kFailRlimit);
  }
  if (p.root) {
    if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) {
      Fail(st, kFailPrivileges);
    }
  }
  Report(st, kDropped, p.root ? 1 : 0);
  if (chdir(p.dir.c_str()) != 0) Fail(st, kFailChdir);
  execve(p.exe.c_str(), p.argv.data(), p.envp.data());
  Fail(st, kFailExec);
}

absl::StatusOr<std::string> ResolveExecutable(const std::string& name) {
  auto runnable = [](const std::string& path) {
    struct stat s {};
    return stat(path.c_str(), &s) == 0 && S_ISREG(s.st_mode) && access(path.c_str(), X_OK) == 0;
  };
  if (name.find('/') != std::string::npos) {
    if (runnable(name)) return name;
    return absl::NotFoundError(absl::StrCat("check command \"", name,
                                            "\" is not an executable file"));
  }
  for (absl::string_view dir : absl::StrSplit(kSandboxPath, ':')) {
    const std::string path = absl::StrCat(dir, "/", name);
    if (runnable(path)) return path;
  }
  return absl::NotFoundError(absl::StrCat("check command \"", name, "\" not found on PATH ",
                                          kSandboxPath));
}

// Hands `dir` and everything in it to nobody, so the dropped child can write there.
absl::Status GiveToNobody(const std::string& dir) {
  std::error_code ec;
  if (lchown(dir.c_str(), kNobody, kNobody) != 0) {
    return absl::InternalError(absl::StrCat("chown ", dir, ": ", strerror(errno)));
  }
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (lchown(it->path().c_str(), kNobody, kNobody) != 0) {
      return absl::InternalError(absl::StrCat("chown ", it->path().string(), ": ",
                                              strerror(errno)));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("listing ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

// Reads the status pipe to EOF (execve succeeded, or the child exited after a failure).
std::vector<Message> ReadStatus(int fd) {
  std::vector<Message> out;
  Message m{};
  size_t got = 0;
  while (true) {
    const ssize_t n = read(fd, reinterpret_cast<char*>(&m) + got, sizeof m - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
    if (got == sizeof m) {
      out.push_back(m);
      got = 0;
    }
  }
  return out;
}

void CloseIf(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Reads the merged output into r->output (capped) until the pipe closes and the leader has
// ended, or the deadline passes (then r->timed_out, unless the leader had already ended).
void CollectOutput(pid_t pid, int fd, std::chrono::steady_clock::time_point start,
                   const SandboxLimits& limits, SandboxResult* r) {
  const auto deadline =
      start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(limits.timeout_seconds));
  bool leader_done = false, pipe_open = true;
  char buf[16384];
  while (pipe_open || !leader_done) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      r->timed_out = !leader_done;
      return;
    }
    int wait_ms = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
    // Poll the leader while output flows, or while it runs with its output closed.
    if (!leader_done) wait_ms = std::min(wait_ms, 20);
    if (pipe_open) {
      pollfd pfd{fd, POLLIN, 0};
      if (poll(&pfd, 1, wait_ms) > 0) {
        const ssize_t got = read(fd, buf, sizeof buf);
        if (got > 0) {
          const size_t room = static_cast<size_t>(limits.output_bytes) - r->output.size();
          r->output.append(buf, std::min(room, static_cast<size_t>(got)));
          if (static_cast<size_t>(got) > room) r->output_truncated = true;
        } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          pipe_open = false;
        }
      }
    } else {
      usleep(static_cast<useconds_t>(wait_ms) * 1000);
    }
    if (!leader_done) {
      siginfo_t info{};
      // WNOWAIT: the leader stays a zombie, so its pid (the group id) cannot be reused yet.
      if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid == pid) {
        leader_done = true;
        kill(-pid, SIGKILL);  // grandchildren go with it; their copies of the pipe close
      }
    }
  }
}

}  // namespace

absl::StatusOr<SandboxResult> RunSandboxed(const std::vector<std::string>& argv,
                                           const std::string& dir, const SandboxLimits& limits) {
  if (argv.empty() || argv[0].empty()) {
    return absl::InvalidArgumentError("empty check command");
  }
  for (const std::string& a : argv) {
    if (a.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError("a check command argument holds a NUL byte");
    }
  }
  struct stat dir_stat {};
  if (stat(dir.c_str(), &dir_stat) != 0 || !S_ISDIR(dir_stat.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox: working directory ", dir, " is not a directory"));
  }
  ChildPlan p;
  if (auto exe = ResolveExecutable(argv[0]); exe.ok()) {
    p.exe = *exe;
  } else {
    return exe.status();
  }
  p.dir = dir;
  p.limits = limits;
  p.root = geteuid() == 0;
  p.args = argv;
  p.env = {absl::StrCat("PATH=", kSandboxPath), absl::StrCat("HOME=", dir),
           absl::StrCat("TMPDIR=", dir), "LANG=C.UTF-8"};
  for (std::string& a : p.args) p.argv.push_back(a.data());
  p.argv.push_back(nullptr);
  for (std::string& e : p.env) p.envp.push_back(e.data());
  p.envp.push_back(nullptr);
  p.uid_map = absl::StrCat(getuid(), " ", getuid(), " 1\n");
  p.gid_map = absl::StrCat(getgid(), " ", getgid(), " 1\n");
  if (p.root) {
    if (absl::Status s = GiveToNobody(dir); !s.ok()) return s;
  }

  int out[2] = {-1, -1}, status[2] = {-1, -1};
  p.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (p.devnull < 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0) {
    const int err = errno;
    for (int* fd : {&p.devnull, &out[0], &out[1], &status[0], &status[1]}) CloseIf(*fd);
    return absl::InternalError(absl::StrCat("sandbox pipes: ", strerror(err)));
  }
  p.out_w = out[1];
  p.status_w = status[1];
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid == 0) RunChild(p);
  const int fork_errno = errno;
  CloseIf(p.devnull);
  CloseIf(out[1]);
  CloseIf(status[1]);
  if (pid < 0) {
    CloseIf(out[0]);
    CloseIf(status[0]);
    return absl::InternalError(absl::StrCat("fork: ", strerror(fork_errno)));
  }
  setpgid(pid, pid);  // also done by the child; whichever runs first wins the race harmlessly

  SandboxResult r;
  for (const Message& m : ReadStatus(status[0])) {
    if (m.step == kNetwork) {
      r.network_isolated = m.value == 1;
    } else if (m.step == kDropped) {
      r.dropped_privileges = m.value == 1;
    } else {
      CloseIf(status[0]);
      CloseIf(out[0]);
      kill(-pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return absl::FailedPreconditionError(absl::StrCat("sandbox: ", StepName(m.step), " for \"",
                                                        argv[0], "\" failed: ",
                                                        strerror(m.value)));
    }
  }
  CloseIf(status[0]);

  CollectOutput(pid, out[0], start, limits, &r);
  kill(-pid, SIGKILL);
  CloseIf(out[0]);
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFEXITED(wstatus)) {
    r.exited = true;
    r.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    r.term_signal = WTERMSIG(wstatus);
  }
  return r;
}

absl::StatusOr<TempDir> TempDir::Create(const std::string& prefix) {
  const char* base = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/", prefix,
                                  "XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp ", tmpl, ": ", strerror(errno)));
  }
  return TempDir(tmpl);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace anvil::eval
