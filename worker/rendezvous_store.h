// A gloo::rendezvous::Store backed by the coordinator's Rendezvous service
// (proto/anvil/v1/rendezvous.proto), so the ranks of a task find each other the way
// torch.distributed's ranks do through a TCPStore. Keys live in the task's rendezvous namespace.
// Gloo expects a Store to throw: failures are gloo::IoException, whose message says "timeout"
// when a key did not appear in time (GlooCollective turns that into DeadlineExceeded).
#ifndef ANVIL_WORKER_RENDEZVOUS_STORE_H_
#define ANVIL_WORKER_RENDEZVOUS_STORE_H_

#include <gloo/rendezvous/store.h>
#include <grpcpp/channel.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "anvil/v1/rendezvous.grpc.pb.h"

namespace anvil::worker {

class RendezvousStore final : public gloo::rendezvous::Store {
 public:
  // `timeout`: how long get() waits for a key that is not there yet.
  RendezvousStore(std::shared_ptr<grpc::Channel> channel, std::string token, std::string ns,
                  std::chrono::milliseconds timeout);

  void set(const std::string& key, const std::vector<char>& data) override;
  // Blocks until the key exists, up to the store's timeout.
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override { wait(keys, timeout_); }
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  std::unique_ptr<v1::Rendezvous::Stub> stub_;
  std::string token_;
  std::string namespace_;
  std::chrono::milliseconds timeout_;
};

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_RENDEZVOUS_STORE_H_
