// absl::Status <-> grpc::Status. The codes have the same numbers (both follow google.rpc.Code),
// so the mapping is exact in both directions; the message travels unchanged.
#ifndef ANVIL_RPC_STATUS_H_
#define ANVIL_RPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace anvil::rpc {

inline grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

inline absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

}  // namespace anvil::rpc

#endif  // ANVIL_RPC_STATUS_H_
