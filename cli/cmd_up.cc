// anvil up: a local cluster in one command — a coordinator (SQLite state under $ANVIL_HOME) and
// N workers as child processes, a bearer token generated once and kept in $ANVIL_HOME/token
// (0600), the coordinator's address in $ANVIL_HOME/address for the other commands. Runs in the
// foreground until Ctrl-C / SIGTERM, then stops its children and exits 0.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/cluster_client.h"
#include "cli/commands.h"
#include "kernels/core/status_macros.h"
#include "rpc/auth.h"

namespace anvil::cli {
namespace {

// anvil-coordinator / anvil-worker: beside this binary, in the build tree's sibling directory,
// or on PATH.
absl::StatusOr<std::string> FindProgram(const std::string& name, const std::string& build_dir) {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path dir = self.parent_path();
    for (const std::filesystem::path& p :
         {dir / name, dir.parent_path() / build_dir / name}) {
      if (access(p.c_str(), X_OK) == 0) return p.string();
    }
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view d : absl::StrSplit(path != nullptr ? path : "", ':')) {
    const std::string p = absl::StrCat(d, "/", name);
    if (!d.empty() && access(p.c_str(), X_OK) == 0) return p;
  }
  return absl::NotFoundError(absl::StrCat(name, " not found beside anvil or on PATH"));
}

// Starts argv[0] with stdout into a pipe (returned in *out_fd) or inherited (out_fd null).
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv, const sigset_t& child_mask,
                            int* out_fd) {
  int fds[2] = {-1, -1};
  if (out_fd != nullptr && pipe2(fds, O_CLOEXEC) != 0) {
    return absl::InternalError("pipe failed");
  }
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &child_mask, nullptr);
    if (out_fd != nullptr) dup2(fds[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    std::fprintf(stderr, "anvil up: cannot run %s: %s\n", args[0], std::strerror(errno));
    _exit(127);
  }
  if (out_fd != nullptr) {
    close(fds[1]);
    *out_fd = fds[0];
  }
  return pid;
}

// Reads the coordinator's stdout until its "listening on ADDR" line (30 s at most).
absl::StatusOr<std::string> WaitForListening(int fd, pid_t pid) {
  std::string buf;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  constexpr char kReady[] = "anvil-coordinator listening on ";
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  while (std::chrono::steady_clock::now() < deadline) {
    char chunk[512];
    const ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n > 0) buf.append(chunk, static_cast<size_t>(n));
    const size_t at = buf.find(kReady);
    if (at != std::string::npos) {
      const size_t eol = buf.find('\n', at);
      if (eol != std::string::npos) {
        return buf.substr(at + sizeof(kReady) - 1, eol - at - (sizeof(kReady) - 1));
      }
    }
    int status = 0;
    if (n == 0 || waitpid(pid, &status, WNOHANG) == pid) {
      return absl::InternalError("anvil-coordinator exited before it was ready");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError("anvil-coordinator not ready after 30 s");
}

void StopAll(const std::vector<pid_t>& pids) {
  for (pid_t p : pids) kill(p, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  size_t left = pids.size();
  std::vector<bool> done(pids.size(), false);
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    for (size_t i = 0; i < pids.size(); ++i) {
      int st = 0;
      if (!done[i] && waitpid(pids[i], &st, WNOHANG) == pids[i]) {
        done[i] = true;
        --left;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (!done[i]) {
      kill(pids[i], SIGKILL);
      waitpid(pids[i], nullptr, 0);
    }
  }
}

}  // namespace

Command UpCommand() {
  Command c;
  c.spec = {"up",
            "Start a local cluster: a coordinator and N workers, in the foreground until "
            "Ctrl-C. State and token live in --home.",
            {},
            {{"workers", "N", "2", "worker processes"},
             {"threads", "N", "1", "CPU threads per worker"},
             {"listen", "ADDR", "127.0.0.1:7070", "coordinator address (port 0: any free port)"},
             {"home", "DIR", "", "state directory (default $ANVIL_HOME or ~/.anvil)"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(int64_t workers, args.GetInt("workers"));
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    if (workers < 0 || workers > 64) return absl::InvalidArgumentError("--workers: 0..64");
    if (threads < 1 || threads > 256) return absl::InvalidArgumentError("--threads: 1..256");
    const std::string home = args.Get("home").empty() ? AnvilHome() : args.Get("home");
    std::error_code ec;
    std::filesystem::create_directories(home, ec);
    if (ec) return absl::PermissionDeniedError(absl::StrCat(home, ": ", ec.message()));
    chmod(home.c_str(), 0700);
    const std::string token_file = home + "/token";
    if (!rpc::ReadTokenFile(token_file).ok()) {
      ANVIL_ASSIGN_OR_RETURN(std::string token, rpc::GenerateToken());
      ANVIL_RETURN_IF_ERROR(rpc::WriteTokenFile(token_file, token));
    }
    ANVIL_ASSIGN_OR_RETURN(std::string coordinator, FindProgram("anvil-coordinator", "coordinator"));
    ANVIL_ASSIGN_OR_RETURN(std::string worker, FindProgram("anvil-worker", "worker"));

    // SIGINT/SIGTERM are taken with sigtimedwait below; children get the old mask back.
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, &old);

    int coord_out = -1;
    ANVIL_ASSIGN_OR_RETURN(
        pid_t coord_pid,
        Spawn({coordinator, "--listen", args.Get("listen"), "--db", home + "/coordinator.db",
               "--token-file", token_file},
              old, &coord_out));
    std::vector<pid_t> children = {coord_pid};
    absl::StatusOr<std::string> address = WaitForListening(coord_out, coord_pid);
    if (!address.ok()) {
      StopAll(children);
      return address.status();
    }
    // Keep draining the coordinator's stdout so it never blocks on a full pipe.
    std::thread([fd = coord_out] {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      char chunk[512];
      ssize_t n;
      while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        (void)!write(STDOUT_FILENO, chunk, static_cast<size_t>(n));
      }
    }).detach();
    if (absl::Status s = rpc::WriteTokenFile(home + "/address", *address); !s.ok()) {
      StopAll(children);
      return s;
    }
    for (int64_t i = 0; i < workers; ++i) {
      absl::StatusOr<pid_t> w =
          Spawn({worker, "--coordinator", *address, "--token-file", token_file, "--name",
                 absl::StrCat("local-", i), "--threads", absl::StrCat(threads)},
                old, nullptr);
      if (!w.ok()) {
        StopAll(children);
        return w.status();
      }
      children.push_back(*w);
    }
    std::printf("cluster up: coordinator at %s, %lld workers, state in %s (token: %s)\n",
                address->c_str(), static_cast<long long>(workers), home.c_str(), token_file.c_str());
    std::fflush(stdout);

    absl::Status result = absl::OkStatus();
    for (;;) {
      timespec tick{0, 200 * 1000 * 1000};
      if (sigtimedwait(&stop, nullptr, &tick) > 0) break;
      int st = 0;
      const pid_t gone = waitpid(-1, &st, WNOHANG);
      if (gone == coord_pid) {
        children.erase(children.begin());
        result = absl::InternalError("the coordinator exited; stopping the workers");
        break;
      }
      if (gone > 0) {
        std::fprintf(stderr, "anvil up: worker process %d exited\n", static_cast<int>(gone));
        std::erase(children, gone);
      }
    }
    StopAll(children);
    std::printf("cluster stopped\n");
    return result;
  };
  return c;
}

}  // namespace anvil::cli
