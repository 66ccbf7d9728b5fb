// anvil-coordinator: parses flags into CoordinatorOptions, starts the server, prints the one
// "listening" line that scripts and tests wait for, and shuts down cleanly on SIGTERM/SIGINT.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "coordinator/server.h"
#include "rpc/auth.h"

namespace {

constexpr char kUsage[] =
    "usage: anvil-coordinator --db PATH (--token-file PATH | --insecure-no-token)\n"
    "  [--listen ADDR (127.0.0.1:7070; port 0 picks one)] [--heartbeat-interval-ms N (1000)]\n"
    "  [--dead-after-ms N (5000)] [--blobs DIR (artifact blobs; <db>.blobs)]\n"
    "  [--max-artifact-bytes N (17179869184 = 16 GiB)]\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "anvil-coordinator: %s\n%s", message.c_str(), kUsage);
  return 2;
}

// Fills `options` from the command line; returns an exit code (0 when the program goes on,
// -1 after --help).
int ParseFlags(int argc, char** argv, anvil::coordinator::CoordinatorOptions* options) {
  std::string token_file;
  bool insecure = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") return std::printf("%s", kUsage), -1;
    if (flag == "--insecure-no-token") {
      insecure = true;
      continue;
    }
    if (i + 1 >= argc) return Fail(flag + ": unknown flag or missing value");
    const std::string value = argv[++i];
    int64_t n = 0;
    if (flag == "--listen") {
      options->listen = value;
    } else if (flag == "--db") {
      options->db_path = value;
    } else if (flag == "--blobs") {
      options->blob_dir = value;
    } else if (flag == "--max-artifact-bytes") {
      if (!absl::SimpleAtoi(value, &n) || n <= 0) {
        return Fail(flag + ": expected a positive integer, got " + value);
      }
      options->max_artifact_bytes = n;
    } else if (flag == "--token-file") {
      token_file = value;
    } else if (flag == "--heartbeat-interval-ms" || flag == "--dead-after-ms") {
      if (!absl::SimpleAtoi(value, &n) || n <= 0) {
        return Fail(flag + ": expected a positive integer, got " + value);
      }
      (flag == "--dead-after-ms" ? options->dead_after_ms : options->heartbeat_interval_ms) = n;
    } else {
      return Fail(flag + ": unknown flag");
    }
  }
  if (options->db_path.empty()) return Fail("--db is required");
  if (token_file.empty() && !insecure) {
    return Fail("--token-file is required (or --insecure-no-token)");
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = anvil::rpc::ReadTokenFile(token_file);
    if (!token.ok()) return Fail(std::string(token.status().message()));
    options->token = *token;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  anvil::coordinator::CoordinatorOptions options;
  if (const int rc = ParseFlags(argc, argv, &options); rc != 0) return rc < 0 ? 0 : rc;
  signal(SIGPIPE, SIG_IGN);  // a client that vanishes must not end the coordinator

  // Signals are taken by sigwait below: blocked before any thread starts, so none of the
  // server's threads receives them instead.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = anvil::coordinator::CoordinatorServer::Start(options);
  if (!server.ok()) {
    std::fprintf(stderr, "anvil-coordinator: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("anvil-coordinator listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "anvil-coordinator: %s, shutting down\n", strsignal(sig));
  (*server)->Shutdown();
  return 0;
}
