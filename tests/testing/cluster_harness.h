// Real processes for the cluster's integration tests: an anvil-coordinator on a free loopback
// port with its own SQLite file and token, anvil-workers pointed at it, and gRPC stubs with the
// token. Processes are killed (SIGKILL) when their handle goes away, so a failing test leaves
// nothing behind.
#ifndef ANVIL_TESTS_TESTING_CLUSTER_HARNESS_H_
#define ANVIL_TESTS_TESTING_CLUSTER_HARNESS_H_

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "anvil/v1/jobs.grpc.pb.h"
#include "rpc/auth.h"

namespace anvil::testing {

inline std::string BuildPath(const std::string& rel) {
  return std::string(ANVIL_BINARY_DIR) + "/" + rel;
}

// A child process; SIGKILLed and reaped on destruction unless Wait()ed.
class Process {
 public:
  Process() = default;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& o) noexcept { *this = std::move(o); }
  Process& operator=(Process&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(out_fd_, o.out_fd_);
    std::swap(out_, o.out_);
    std::swap(consumed_, o.consumed_);
    return *this;
  }
  ~Process() {
    Kill(SIGKILL);
    if (out_fd_ >= 0) close(out_fd_);
  }

  // Starts argv with stdout on a pipe (read with ReadUntil) and stderr inherited.
  static absl::StatusOr<Process> Start(const std::vector<std::string>& argv) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe");
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError("fork");
    if (pid == 0) {
      dup2(fds[1], STDOUT_FILENO);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    Process p;
    p.pid_ = pid;
    p.out_fd_ = fds[0];
    return p;
  }

  // Reads stdout until `marker` and the end of its line appear; returns the rest of that line.
  absl::StatusOr<std::string> ReadUntil(const std::string& marker, int timeout_s = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      char chunk[4096];
      const ssize_t n = read(out_fd_, chunk, sizeof(chunk));
      if (n > 0) out_.append(chunk, static_cast<size_t>(n));
      const size_t at = out_.find(marker, consumed_);
      if (at != std::string::npos) {
        const size_t eol = out_.find('\n', at);
        if (eol != std::string::npos) {
          consumed_ = eol + 1;
          return out_.substr(at + marker.size(), eol - at - marker.size());
        }
      }
      if (n == 0) return absl::InternalError(absl::StrCat("process exited; stdout: ", out_));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return absl::DeadlineExceededError(absl::StrCat("no \"", marker, "\" in: ", out_));
  }

  void Kill(int sig) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    if (sig == SIGKILL) {
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // Waits for exit; returns the exit code (128 + signal when killed), -1 on timeout.
  int Wait(int timeout_s = 60) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
      int st = 0;
      if (waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string out_;
  size_t consumed_ = 0;
};

// Runs a shell command; returns its stdout and stderr together and sets its exit code.
inline std::string RunShell(const std::string& cmd, int* exit_code) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) {
    *exit_code = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int st = pclose(p);
  *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return out;
}

// A coordinator (and its state files) under `dir`.
struct Coordinator {
  std::string dir, address, token, token_file, db;
  int dead_after_ms = 2000;
  Process process;

  // Starts (or restarts, on the same db and port when `address` is set) the coordinator.
  absl::Status Start(const std::vector<std::string>& extra = {}) {
    if (token.empty()) {
      absl::StatusOr<std::string> t = rpc::GenerateToken();
      if (!t.ok()) return t.status();
      token = *t;
      token_file = dir + "/token";
      db = dir + "/coordinator.db";
      if (absl::Status s = rpc::WriteTokenFile(token_file, token); !s.ok()) return s;
    }
    std::vector<std::string> argv = {BuildPath("coordinator/anvil-coordinator"), "--listen",
                                      address.empty() ? "127.0.0.1:0" : address, "--db", db,
                                      "--token-file", token_file, "--heartbeat-interval-ms",
                                      "200", "--dead-after-ms", std::to_string(dead_after_ms)};
    argv.insert(argv.end(), extra.begin(), extra.end());
    absl::StatusOr<Process> p = Process::Start(argv);
    if (!p.ok()) return p.status();
    process = std::move(*p);
    absl::StatusOr<std::string> addr = process.ReadUntil("anvil-coordinator listening on ");
    if (!addr.ok()) return addr.status();
    address = *addr;
    return absl::OkStatus();
  }

  // Starts a worker and waits for its registration; *id gets the worker id it was given.
  absl::StatusOr<Process> StartWorker(const std::string& name, int threads = 1,
                                      std::string* id = nullptr) const {
    absl::StatusOr<Process> p = Process::Start(
        {BuildPath("worker/anvil-worker"), "--coordinator", address, "--token-file", token_file,
         "--name", name, "--threads", std::to_string(threads)});
    if (!p.ok()) return p;
    absl::StatusOr<std::string> r = p->ReadUntil("registered as ");
    if (!r.ok()) return r.status();
    if (id != nullptr) *id = *r;
    return p;
  }

  std::unique_ptr<v1::Jobs::Stub> Jobs() const {
    return v1::Jobs::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  void Prepare(grpc::ClientContext* ctx, int seconds = 30) const {
    rpc::PrepareContext(ctx, token, std::chrono::seconds(seconds));
  }
};

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_CLUSTER_HARNESS_H_
