// A real anvil-server process for the server's integration tests: free loopback ports, the real
// SmolLM2 model, an optional bearer token, and clients for both APIs (httplib::Client for HTTP,
// the generated Inference stub for gRPC). Also runs `anvil generate` as a process for the
// greedy reference text. Killed (SIGKILL) when the handle goes away.
#ifndef ANVIL_TESTS_TESTING_SERVER_HARNESS_H_
#define ANVIL_TESTS_TESTING_SERVER_HARNESS_H_

#include <httplib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include <condition_variable>
#include <mutex>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "anvil/v1/inference.grpc.pb.h"
#include "rpc/auth.h"
#include "tests/testing/cluster_harness.h"
#include "tests/testing/paths.h"

namespace anvil::testing {

// A fresh directory under the test's temp dir.
inline std::string MakeTempDir(const std::string& name) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/", name, "-", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

struct ServerProcess {
  std::string dir;
  std::string token;       // empty: started without --token-file
  std::string grpc_address;
  int http_port = 0;
  Process process;

  // Starts anvil-server on the Q4_1 model and waits until it is ready.
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const std::string& dir, bool with_token, const std::vector<std::string>& extra = {}) {
    auto s = std::make_unique<ServerProcess>();
    s->dir = dir;
    std::vector<std::string> argv = {BuildPath("server/anvil-server"), "--model", Q41ModelPath(),
                                     "--port", "0", "--http-port", "0", "--threads", "2"};
    if (with_token) {
      absl::StatusOr<std::string> t = rpc::GenerateToken();
      if (!t.ok()) return t.status();
      s->token = *t;
      const std::string file = dir + "/token";
      if (absl::Status st = rpc::WriteTokenFile(file, s->token); !st.ok()) return st;
      argv.push_back("--token-file");
      argv.push_back(file);
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    absl::StatusOr<Process> p = Process::Start(argv);
    if (!p.ok()) return p.status();
    s->process = std::move(*p);
    // "anvil-server listening on grpc=127.0.0.1:PORT http=127.0.0.1:PORT"
    absl::StatusOr<std::string> line = s->process.ReadUntil("anvil-server listening on ");
    if (!line.ok()) return line.status();
    const size_t g = line->find("grpc="), h = line->find(" http=");
    if (g == std::string::npos || h == std::string::npos) {
      return absl::InternalError(absl::StrCat("unexpected line: ", *line));
    }
    s->grpc_address = line->substr(g + 5, h - g - 5);
    const std::string http = line->substr(h + 6);
    if (!absl::SimpleAtoi(http.substr(http.rfind(':') + 1), &s->http_port)) {
      return absl::InternalError(absl::StrCat("unexpected line: ", *line));
    }
    absl::StatusOr<std::string> ready = s->process.ReadUntil("anvil-server ready", 120);
    if (!ready.ok()) return ready.status();
    return s;
  }

  // An HTTP client with the token (when there is one) and generous timeouts.
  std::unique_ptr<httplib::Client> Http(bool with_token = true) const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", http_port);
    c->set_read_timeout(120, 0);
    c->set_write_timeout(30, 0);
    c->set_connection_timeout(10, 0);
    if (with_token && !token.empty()) c->set_bearer_token_auth(token);
    return c;
  }

  std::unique_ptr<v1::Inference::Stub> Grpc() const {
    return v1::Inference::NewStub(
        grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  }
  void Prepare(grpc::ClientContext* ctx, int seconds = 120) const {
    rpc::PrepareContext(ctx, token, std::chrono::seconds(seconds));
  }
};

// `anvil generate MODEL --prompt P --temp 0 --max-tokens N [--chat]`: the generated text alone
// (stdout is the prompt, when not --chat, then the text and a newline).
// `extra`: more flags for anvil generate (e.g. " --matmul fast").
inline absl::StatusOr<std::string> AnvilGenerate(const std::string& prompt, int max_tokens,
                                                 bool chat, const std::string& extra = "") {
  std::string quoted = "'";
  for (char c : prompt) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  const std::string cmd =
      absl::StrCat("(", BuildPath("cli/anvil"), " generate ", Q41ModelPath(), " --prompt ",
                   quoted, " --temp 0 --max-tokens ", max_tokens, chat ? " --chat" : "",
                   " --threads 2", extra, " 2>/dev/null)");
  int rc = 0;
  std::string out = RunShell(cmd, &rc);
  if (rc != 0) return absl::InternalError(absl::StrCat("anvil generate exited ", rc, ": ", out));
  if (!chat) {
    if (out.compare(0, prompt.size(), prompt) != 0) {
      return absl::InternalError(absl::StrCat("anvil generate did not echo the prompt: ", out));
    }
    out = out.substr(prompt.size());
  }
  if (out.empty() || out.back() != '\n') return absl::InternalError("no final newline: " + out);
  out.pop_back();
  return out;
}

// grpc.health.v1.Health/Check for service "" called generically (no health.proto is installed):
// the serialized HealthCheckResponse ("\x08\x01" SERVING, "\x08\x02" NOT_SERVING), or the
// call's error.
inline absl::StatusOr<std::string> GrpcHealth(const std::string& address) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice empty;
  grpc::ByteBuffer request(&empty, 1), response;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = s;
                   done = true;
                   cv.notify_one();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("cannot read the response");
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  return bytes;
}

// The payloads of a server-sent-events body ("data: X\n\n" -> X), in order.
inline std::vector<std::string> SsePayloads(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find("\n\n", at);
    if (end == std::string::npos) break;
    const std::string event = body.substr(at, end - at);
    if (event.rfind("data: ", 0) == 0) out.push_back(event.substr(6));
    at = end + 2;
  }
  return out;
}

// A POST whose response body arrives through `receiver` (as the server sends it).
inline httplib::Result PostStreaming(httplib::Client& client, const std::string& path,
                                     const std::string& body,
                                     httplib::ContentReceiverWithProgress receiver) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body;
  req.set_header("Content-Type", "application/json");
  req.content_receiver = std::move(receiver);
  return client.send(req);
}

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_SERVER_HARNESS_H_
