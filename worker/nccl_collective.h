// train::Collective over NCCL, for workers with CUDA GPUs (built when CUDA and NCCL are found;
// `anvil-worker --collective nccl`). Rank 0 makes the NCCL unique id and publishes it through the
// rendezvous store (the coordinator's Rendezvous service, as torch.distributed's TCPStore carries
// it); every rank reads it, binds its device and joins the communicator. The communicator is
// created non-blocking and every wait is bounded: a rank that never joins, or a collective that
// does not complete within the timeout, aborts the communicator and returns DeadlineExceeded
// instead of hanging.
//
// The trainer's gradients live in host memory today, so AllreduceSum stages host arrays through
// a device buffer (in chunks of at most 64 MiB); the reduction itself runs on the GPUs.
#ifndef ANVIL_WORKER_NCCL_COLLECTIVE_H_
#define ANVIL_WORKER_NCCL_COLLECTIVE_H_

#include <chrono>
#include <memory>

#include "absl/status/statusor.h"
#include "train/collective.h"

namespace gloo::rendezvous {
class Store;
}  // namespace gloo::rendezvous

namespace anvil::worker {

struct NcclOptions {
  int rank = 0;
  int world_size = 1;
  int device = 0;  // the CUDA device this rank uses
  std::chrono::milliseconds timeout{60000};
};

class NcclCollective final : public train::Collective {
 public:
  // InvalidArgument for a bad rank / world size / device; Unavailable without a usable GPU;
  // DeadlineExceeded when the id or a peer does not arrive within options.timeout.
  static absl::StatusOr<std::unique_ptr<NcclCollective>> Connect(const NcclOptions& options,
                                                                 gloo::rendezvous::Store& store);
  ~NcclCollective() override;

  int rank() const override { return options_.rank; }
  int world_size() const override { return options_.world_size; }
  absl::Status AllreduceSum(float* data, size_t n) override;
  absl::Status AllreduceSum(double* data, size_t n) override;

 private:
  struct State;
  NcclCollective(const NcclOptions& options, std::unique_ptr<State> state);
  absl::Status Sum(void* data, size_t n, size_t elem_bytes, bool is_double);

  NcclOptions options_;
  std::unique_ptr<State> state_;
  absl::Status broken_;  // after a failure every later call fails with it
};

// The CUDA devices of this machine as the worker registers them: name and memory of each.
// Empty when there is none (or no driver).
struct GpuInfo {
  std::string name;
  int64_t memory_bytes = 0;
};
std::vector<GpuInfo> ListGpus();

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_NCCL_COLLECTIVE_H_
