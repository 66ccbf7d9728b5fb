// How the cluster commands (submit, jobs, watch, logs, cancel, up) reach the coordinator: the
// address and token come from flags, then the environment (ANVIL_COORDINATOR, ANVIL_TOKEN),
// then the files `anvil up` writes under $ANVIL_HOME (default ~/.anvil): `address` and `token`.
#ifndef ANVIL_CLI_CLUSTER_CLIENT_H_
#define ANVIL_CLI_CLUSTER_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "cli/args.h"

namespace anvil::cli {

// $ANVIL_HOME, or ~/.anvil.
std::string AnvilHome();

// The flags every cluster command takes.
std::vector<FlagSpec> ClusterFlags();

struct ClusterConnection {
  std::string address;
  std::string token;
  std::shared_ptr<grpc::Channel> channel;
  // Token metadata and a deadline of `seconds` from now.
  void Prepare(grpc::ClientContext* context, int seconds = 30) const;
};

// Resolves address and token (NotFound with what to do when there is no token anywhere) and
// opens a channel (16 MiB messages, keepalive). Does not connect yet.
absl::StatusOr<ClusterConnection> ConnectCluster(const Args& args);

}  // namespace anvil::cli

#endif  // ANVIL_CLI_CLUSTER_CLIENT_H_
