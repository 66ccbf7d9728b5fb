// The whole anvil-server process minus flag parsing: starts the gRPC server (Inference +
// grpc.health.v1 + reflection) and the HTTP server at once, loads the model in the background
// (health NOT_SERVING, calls UNAVAILABLE / 503 until it is ready), and drains on request:
// health flips to NOT_SERVING, new calls are refused, in-flight ones finish within the timeout,
// then both servers stop. main.cc drives it from signals; tests may run it in-process.
#ifndef ANVIL_SERVER_SERVER_APP_H_
#define ANVIL_SERVER_SERVER_APP_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "server/server_core.h"
#include "server/server_options.h"

namespace grpc {
class Server;
}  // namespace grpc

namespace anvil::rpc {
class TokenChecker;
}  // namespace anvil::rpc

namespace anvil::server {

class HttpServer;
class InferenceService;

class ServerApp {
 public:
  // Binds both ports (FailedPrecondition when one cannot be bound) and starts loading.
  static absl::StatusOr<std::unique_ptr<ServerApp>> Start(ServerOptions options);
  ~ServerApp();

  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  InferenceCore& core() { return *core_; }

  // Blocks until the model is loaded (or failed to load): its status.
  absl::Status WaitLoaded();
  // Drains and stops: waits for loading to end, stops admitting (health NOT_SERVING,
  // UNAVAILABLE / 503), waits up to `timeout` for requests in flight, then stops both servers
  // (streams still running past the timeout are cut). True when everything finished in time.
  bool Shutdown(absl::Duration timeout);

 private:
  ServerApp() = default;
  void SetHealth(bool serving);

  std::unique_ptr<InferenceCore> core_;
  std::unique_ptr<rpc::TokenChecker> auth_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<grpc::Server> grpc_;
  std::unique_ptr<HttpServer> http_;
  int grpc_port_ = -1;
  int http_port_ = -1;
  std::thread loader_;
  absl::Notification loaded_;
  absl::Status load_status_;
  bool shut_down_ = false;
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_SERVER_APP_H_
