// train::Collective over Gloo's TCP transport: the ranks of one task find each other through a
// gloo::rendezvous::Store (the coordinator's Rendezvous service in a cluster, worker/
// rendezvous_store.h; Gloo's HashStore in tests) and connect a full mesh. Gloo reports errors
// by throwing; nothing thrown leaves this file: every exception becomes an absl::Status.
#ifndef ANVIL_WORKER_GLOO_COLLECTIVE_H_
#define ANVIL_WORKER_GLOO_COLLECTIVE_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "train/collective.h"

namespace gloo {
class Context;
namespace rendezvous {
class Store;
}  // namespace rendezvous
}  // namespace gloo

namespace anvil::worker {

struct GlooOptions {
  int rank = 0;
  int world_size = 1;
  // The address this rank listens on for its peers: the cluster address, never 0.0.0.0.
  std::string hostname = "127.0.0.1";
  // For the rendezvous and for each collective: a peer that has not taken part by then makes
  // the call return DeadlineExceeded instead of hanging.
  std::chrono::milliseconds timeout{60000};
};

class GlooCollective final : public train::Collective {
 public:
  // Connects to every other rank through `store` (keys are used as given: namespace them, e.g.
  // with gloo::rendezvous::PrefixStore). InvalidArgument for a bad rank / world size;
  // DeadlineExceeded when a peer does not show up within options.timeout; Unavailable when
  // the transport fails (e.g. the hostname does not resolve to a local address).
  static absl::StatusOr<std::unique_ptr<GlooCollective>> Connect(
      const GlooOptions& options, gloo::rendezvous::Store& store);
  ~GlooCollective() override;

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  absl::Status AllreduceSum(float* data, size_t n) override;
  absl::Status AllreduceSum(double* data, size_t n) override;

 private:
  GlooCollective(const GlooOptions& options, std::shared_ptr<gloo::Context> context);
  template <typename T>
  absl::Status Sum(T* data, size_t n);

  GlooOptions options_;
  std::shared_ptr<gloo::Context> context_;
  uint32_t next_tag_ = 0;
  // After a failed collective the mesh is in an unknown state (a peer may be mid-transfer):
  // every later call fails with this status instead of mixing steps.
  absl::Status broken_;
};

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_GLOO_COLLECTIVE_H_
