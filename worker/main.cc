// anvil-worker: one worker process of a cluster. Parses flags into an AgentConfig, reads the
// token, and runs the agent (worker/agent.h) until SIGTERM or SIGINT, which stop the running
// task at its next step (reported to the coordinator) and exit 0.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "rpc/auth.h"
#include "worker/agent.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7070", "coordinator address HOST:PORT");
ABSL_FLAG(std::string, token_file, "", "bearer token file (default: $ANVIL_TOKEN; none: no token)");
ABSL_FLAG(std::string, name, "", "worker name, stable across restarts (default: hostname:pid)");
ABSL_FLAG(int, threads, 1, "CPU threads for training");
ABSL_FLAG(std::string, gloo_host, "127.0.0.1", "address peers reach this worker's collectives on");
ABSL_FLAG(int, collective_timeout_s, 60, "seconds a collective waits for its peers");
ABSL_FLAG(std::string, collective, "gloo",
          "gloo (CPU, TCP) or nccl (CUDA builds: the GPUs reduce the gradients)");
ABSL_FLAG(int, cuda_device, 0, "CUDA device for --collective nccl");
ABSL_FLAG(std::string, server_binary, "",
          "anvil-server for deploy jobs (default: next to anvil-worker, ../server/, $PATH)");

namespace {

// SIGTERM / SIGINT write a byte here; a thread reads it and shuts the agent down. (Blocking the
// signals would not do: libraries start threads before main, e.g. OpenBLAS's pool, and a
// signal delivered to one of those would kill the process.)
int stop_pipe[2] = {-1, -1};

extern "C" void OnStopSignal(int) {
  const char byte = 1;
  (void)!write(stop_pipe[1], &byte, 1);
}

absl::StatusOr<anvil::worker::AgentConfig> ConfigFromFlags() {
  anvil::worker::AgentConfig c;
  c.coordinator = absl::GetFlag(FLAGS_coordinator);
  c.name = absl::GetFlag(FLAGS_name);
  if (c.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    c.name = absl::StrCat(host, ":", getpid());
  }
  c.threads = absl::GetFlag(FLAGS_threads);
  c.gloo_host = absl::GetFlag(FLAGS_gloo_host);
  if (c.threads < 1 || c.threads > 1024) return absl::InvalidArgumentError("--threads: 1..1024");
  const int timeout_s = absl::GetFlag(FLAGS_collective_timeout_s);
  if (timeout_s < 1) return absl::InvalidArgumentError("--collective-timeout-s: at least 1");
  c.collective_timeout = std::chrono::seconds(timeout_s);
  c.collective = absl::GetFlag(FLAGS_collective);
  if (c.collective != "gloo" && c.collective != "nccl") {
    return absl::InvalidArgumentError("--collective: gloo or nccl");
  }
  c.cuda_device = absl::GetFlag(FLAGS_cuda_device);
  c.server_binary = absl::GetFlag(FLAGS_server_binary);
  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = anvil::rpc::ReadTokenFile(token_file);
    if (!token.ok()) return token.status();
    c.token = *token;
  } else if (const char* t = std::getenv("ANVIL_TOKEN"); t != nullptr) {
    c.token = t;
  }
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  // A peer that dies mid-collective must not kill this process: Gloo writes to its sockets
  // without MSG_NOSIGNAL, and the default SIGPIPE action is to terminate. With it ignored the
  // write fails with EPIPE, the collective reports an error and the task fails cleanly
  // (seen: kill -9 of rank 1 took rank 0 down with SIGPIPE, and the job waited forever).
  signal(SIGPIPE, SIG_IGN);
  if (pipe(stop_pipe) != 0) return 1;
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  absl::SetProgramUsageMessage("anvil-worker --coordinator ADDR --token-file PATH [--name NAME]");
  // absl flags spell --token_file; accept the documented --token-file as well.
  for (int i = 1; i < argc; ++i) {
    for (char* p = argv[i] + 2; argv[i][0] == '-' && argv[i][1] == '-' && *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<anvil::worker::AgentConfig> config = ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "anvil-worker: %s\n", config.status().ToString().c_str());
    return 2;
  }
  const std::string name = config->name;
  config->on_registered = [name](const std::string& id) {
    std::printf("anvil-worker %s registered as %s\n", name.c_str(), id.c_str());
    std::fflush(stdout);
  };
  anvil::worker::Agent agent(*std::move(config));
  std::thread([&agent] {
    char byte = 0;
    while (read(stop_pipe[0], &byte, 1) < 0 && errno == EINTR) {
    }
    agent.Shutdown();
  }).detach();
  const absl::Status s = agent.Run();
  if (!s.ok()) {
    std::fprintf(stderr, "anvil-worker: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
