// The OpenAI-compatible HTTP API (cpp-httplib): /v1/chat/completions, /v1/completions,
// /v1/models, /v1/embeddings, /v1/adapters (run-time LoRA admin), /health and /metrics.
// Every endpoint checks the bearer token when one is configured (before the body is read);
// bodies past ServerOptions::max_body_bytes are refused with 413. Handlers are thin: parse
// (openai_request), call the InferenceCore, shape the answer (openai_response).
#ifndef ANVIL_SERVER_HTTP_SERVER_H_
#define ANVIL_SERVER_HTTP_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/server_core.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace anvil::server {

class HttpServer {
 public:
  // Binds options.host:options.http_port (0: a free port) and serves on a thread pool sized for
  // every request the engine can hold at once plus a few spare connections.
  // FailedPrecondition when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(InferenceCore* core);
  ~HttpServer();

  int port() const { return port_; }
  // Stops accepting and waits for the handlers in flight (streams included). Idempotent.
  void Stop();

 private:
  explicit HttpServer(InferenceCore* core);
  void Routes();

  InferenceCore* const core_;
  std::unique_ptr<httplib::Server> svr_;
  std::thread thread_;
  int port_ = 0;
};

// /v1/completions and /v1/chat/completions (http_generate.cc).
void HandleCompletion(InferenceCore* core, bool chat, const httplib::Request& req,
                      httplib::Response& res);

// Writes `s` as OpenAI's error object with its HTTP status (and Retry-After on 429).
void ReplyError(InferenceCore* core, const absl::Status& s, httplib::Response& res);

}  // namespace anvil::server

#endif  // ANVIL_SERVER_HTTP_SERVER_H_
