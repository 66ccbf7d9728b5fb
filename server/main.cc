// anvil-server: parses flags into ServerOptions, starts the ServerApp, prints the two lines that
// scripts and tests wait for ("listening on", then "ready"), and on SIGTERM/SIGINT drains and
// exits 0 (1 when the model cannot be loaded, 2 for a usage error).
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "rpc/auth.h"
#include "server/server_app.h"

namespace {

constexpr char kUsage[] =
    "usage: anvil-server --model PATH [--model-id NAME] [--host ADDR (127.0.0.1)]\n"
    "  [--port N (gRPC, 7080; 0 picks one; -1 off)] [--http-port N (8080; 0 picks; -1 off)]\n"
    "  [--token-file PATH (bearer token for every endpoint)] [--threads N (2)]\n"
    "  [--max-running N (16)] [--max-queue N (64)] [--ctx N (2048)] [--max-step-tokens N (512)]\n"
    "  [--prefill-chunk N (256)] [--decode-step-prefill N (8)] [--kv-block-tokens N (16)]\n"
    "  [--kv-blocks N (0: auto)] [--kv-type f32|f16 (f32)] [--matmul exact|fast (exact)]\n"
    "  [--no-prefix-cache]\n"
    "  [--max-prompt-tokens N (0: ctx-1)]\n"
    "  [--max-tokens-limit N (4096)] [--default-max-tokens N (256)] [--max-n N (8)]\n"
    "  [--max-body-bytes N (4194304)] [--adapter NAME=PATH (repeatable)]\n"
    "  [--drain-timeout-s N (30)]\n";

int Fail(const std::string& message) {
  std::fprintf(stderr, "anvil-server: %s\n%s", message.c_str(), kUsage);
  return 2;
}

// A flag's integer value in [lo, hi]; false with a message otherwise.
bool ParseInt(const std::string& flag, const std::string& value, int64_t lo, int64_t hi,
              int64_t* out, std::string* error) {
  if (!absl::SimpleAtoi(value, out) || *out < lo || *out > hi) {
    *error = absl::StrCat(flag, ": expected an integer in [", lo, ", ", hi, "], got '", value, "'");
    return false;
  }
  return true;
}

// Fills `o`; returns an exit code (0: go on, -1: --help printed).
int ParseFlags(int argc, char** argv, anvil::server::ServerOptions* o) {
  std::string token_file;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") return std::printf("%s", kUsage), -1;
    if (flag == "--no-prefix-cache") {
      o->engine.prefix_cache = false;
      continue;
    }
    if (i + 1 >= argc) return Fail(flag + ": unknown flag or missing value");
    const std::string v = argv[++i];
    int64_t n = 0;
    std::string err;
    auto num = [&](int64_t lo, int64_t hi) { return ParseInt(flag, v, lo, hi, &n, &err); };
    if (flag == "--model") {
      o->model_path = v;
    } else if (flag == "--model-id") {
      if (v.empty() || v.find('+') != std::string::npos) return Fail("--model-id: no '+' allowed");
      o->model_id = v;
    } else if (flag == "--host") {
      o->host = v;
    } else if (flag == "--port" || flag == "--http-port") {
      if (!num(-1, 65535)) return Fail(err);
      (flag == "--port" ? o->grpc_port : o->http_port) = static_cast<int>(n);
    } else if (flag == "--token-file") {
      token_file = v;
    } else if (flag == "--adapter") {
      const size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == v.size()) {
        return Fail("--adapter: expected NAME=PATH, got '" + v + "'");
      }
      o->adapters.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (flag == "--threads") {
      if (!num(1, 1024)) return Fail(err);
      o->engine.threads = static_cast<int>(n);
    } else if (flag == "--max-running" || flag == "--max-queue" || flag == "--max-step-tokens" ||
               flag == "--prefill-chunk" || flag == "--decode-step-prefill" ||
               flag == "--kv-block-tokens" ||
               flag == "--max-tokens-limit" || flag == "--default-max-tokens" ||
               flag == "--max-n" || flag == "--max-prompt-tokens") {
      if (!num(flag == "--max-queue" || flag == "--max-prompt-tokens" ? 0 : 1, 1 << 20)) {
        return Fail(err);
      }
      const auto x = static_cast<int32_t>(n);
      if (flag == "--max-running") o->engine.max_running = x;
      if (flag == "--max-queue") o->engine.max_queue = x;
      if (flag == "--max-step-tokens") o->engine.max_step_tokens = x;
      if (flag == "--prefill-chunk") o->engine.prefill_chunk = x;
      if (flag == "--decode-step-prefill") o->engine.decode_step_prefill = x;
      if (flag == "--kv-block-tokens") o->engine.kv_block_tokens = x;
      if (flag == "--max-tokens-limit") o->engine.max_tokens_limit = x;
      if (flag == "--default-max-tokens") o->default_max_tokens = x;
      if (flag == "--max-n") o->max_n = x;
      if (flag == "--max-prompt-tokens") o->engine.max_prompt_tokens = x;
    } else if (flag == "--ctx" || flag == "--kv-blocks" || flag == "--max-body-bytes") {
      if (!num(flag == "--kv-blocks" ? 0 : 1, int64_t{1} << 40)) return Fail(err);
      if (flag == "--ctx") o->engine.n_ctx = n;
      if (flag == "--kv-blocks") o->engine.kv_blocks = n;
      if (flag == "--max-body-bytes") o->max_body_bytes = n;
    } else if (flag == "--kv-type") {
      if (v != "f32" && v != "f16") return Fail("--kv-type: expected f32 or f16, got '" + v + "'");
      o->engine.kv_type = v == "f16" ? anvil::DType::kF16 : anvil::DType::kF32;
    } else if (flag == "--matmul") {
      if (v != "exact" && v != "fast") {
        return Fail("--matmul: expected exact or fast, got '" + v + "'");
      }
      o->engine.matmul =
          v == "fast" ? anvil::MatMulNumerics::kBlockSum : anvil::MatMulNumerics::kLlamaCpp;
    } else if (flag == "--drain-timeout-s") {
      if (!num(0, 86400)) return Fail(err);
      o->drain_timeout_s = static_cast<double>(n);
    } else {
      return Fail(flag + ": unknown flag");
    }
  }
  if (o->model_path.empty()) return Fail("--model is required");
  if (o->default_max_tokens > o->engine.max_tokens_limit) {
    return Fail("--default-max-tokens exceeds --max-tokens-limit");
  }
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = anvil::rpc::ReadTokenFile(token_file);
    if (!token.ok()) return Fail(std::string(token.status().message()));
    o->token = *token;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  anvil::server::ServerOptions options;
  if (const int rc = ParseFlags(argc, argv, &options); rc != 0) return rc < 0 ? 0 : rc;
  signal(SIGPIPE, SIG_IGN);  // a client that vanishes mid-stream must not end the server
  // Signals are taken by sigtimedwait below: blocked before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto app = anvil::server::ServerApp::Start(options);
  if (!app.ok()) {
    std::fprintf(stderr, "anvil-server: %s\n", app.status().ToString().c_str());
    return 1;
  }
  std::printf("anvil-server listening on grpc=%s:%d http=%s:%d\n", options.host.c_str(),
              (*app)->grpc_port(), options.host.c_str(), (*app)->http_port());
  std::fflush(stdout);
  if (options.token.empty() && options.host != "127.0.0.1" && options.host != "localhost") {
    std::fprintf(stderr, "anvil-server: warning: no --token-file; anyone who can reach %s may "
                         "use this server\n", options.host.c_str());
  }
  const absl::Status loaded = (*app)->WaitLoaded();
  if (!loaded.ok()) {
    std::fprintf(stderr, "anvil-server: loading %s: %s\n", options.model_path.c_str(),
                 loaded.ToString().c_str());
    (*app)->Shutdown(absl::ZeroDuration());
    return 1;
  }
  std::printf("anvil-server ready: model %s (matmul %s, kv %s)\n",
              (*app)->core().model_id().c_str(),
              options.engine.matmul == anvil::MatMulNumerics::kBlockSum ? "fast" : "exact",
              options.engine.kv_type == anvil::DType::kF16 ? "f16" : "f32");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "anvil-server: %s, draining (up to %.0f s)\n", strsignal(sig),
               options.drain_timeout_s);
  const bool in_time = (*app)->Shutdown(absl::Seconds(options.drain_timeout_s));
  std::fprintf(stderr, "anvil-server: %s; exiting\n",
               in_time ? "all requests finished" : "drain timeout: remaining requests cancelled");
  return 0;
}
