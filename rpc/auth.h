// Bearer-token authentication for every RPC. The coordinator is configured with one token;
// clients (workers, the CLI, any gRPC client) send "authorization: Bearer <token>" metadata.
// Every service method calls TokenChecker::Check first and finishes the call with its status
// when it is not OK, so a missing or wrong token is UNAUTHENTICATED on every method.
#ifndef ANVIL_RPC_AUTH_H_
#define ANVIL_RPC_AUTH_H_

#include <grpcpp/client_context.h>
#include <grpcpp/server_context.h>

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace anvil::rpc {

inline constexpr char kAuthMetadataKey[] = "authorization";

class TokenChecker {
 public:
  // An empty token disables the check (only for tests that say so; `anvil up` always sets one).
  explicit TokenChecker(std::string token) : token_(std::move(token)) {}
  // OK, or UNAUTHENTICATED ("missing bearer token" / "invalid bearer token"). The comparison
  // takes the same time wherever the tokens differ.
  absl::Status Check(const grpc::ServerContextBase& context) const;
  bool enabled() const { return !token_.empty(); }

 private:
  std::string token_;
};

// What a client needs to call the coordinator.
struct ClientOptions {
  std::string address = "127.0.0.1:7070";
  std::string token;
  std::chrono::milliseconds deadline{30000};  // per call, unless the call sets its own
};

// Adds the token metadata and the deadline (now + `deadline`) to a call's context.
void PrepareContext(grpc::ClientContext* context, const std::string& token,
                    std::chrono::milliseconds deadline);

// A random 256-bit token as 64 hex digits (from /dev/urandom).
absl::StatusOr<std::string> GenerateToken();

// Writes `token` to `path` with mode 0600 (atomically: temp file, fsync, rename), creating the
// parent directory (0700) when needed.
absl::Status WriteTokenFile(const std::string& path, const std::string& token);
// Reads a token file (surrounding whitespace stripped). NotFound / InvalidArgument (empty).
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

}  // namespace anvil::rpc

#endif  // ANVIL_RPC_AUTH_H_
