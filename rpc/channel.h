// The one way cluster clients (workers, the CLI) open a channel to the coordinator: 16 MiB
// messages, keepalive pings, and a reconnect backoff capped at one second. gRPC's default cap
// is two minutes, which after a coordinator restart kept workers failing to connect long past
// their heartbeat deadline, so they were declared dead although both sides were up.
#ifndef ANVIL_RPC_CHANNEL_H_
#define ANVIL_RPC_CHANNEL_H_

#include <grpcpp/channel.h>

#include <memory>
#include <string>

namespace anvil::rpc {

inline constexpr int kMaxMessageBytes = 16 << 20;

std::shared_ptr<grpc::Channel> CreateClusterChannel(const std::string& address);

}  // namespace anvil::rpc

#endif  // ANVIL_RPC_CHANNEL_H_
