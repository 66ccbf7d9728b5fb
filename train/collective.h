// The collective operations data-parallel training needs, behind one interface so that train/
// knows nothing about the transport: worker/gloo_collective.h fills it over Gloo TCP (an NCCL
// one can follow). RunFinetune with a null Collective, or LocalCollective, is one process.
#ifndef ANVIL_TRAIN_COLLECTIVE_H_
#define ANVIL_TRAIN_COLLECTIVE_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace anvil::train {

class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;        // 0 .. world_size() - 1
  virtual int world_size() const = 0;  // >= 1

  // In place: afterwards every rank holds the element-wise sum over all ranks, bit-identical on
  // every rank. Every rank must call with the same n, in the same order. DeadlineExceeded when
  // a peer does not take part within the collective's timeout, Unavailable when a peer is gone.
  virtual absl::Status AllreduceSum(float* data, size_t n) = 0;   // data: [n]
  virtual absl::Status AllreduceSum(double* data, size_t n) = 0;  // data: [n]
};

// World size 1: the sums are the inputs.
class LocalCollective final : public Collective {
 public:
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  absl::Status AllreduceSum(float*, size_t) override { return absl::OkStatus(); }
  absl::Status AllreduceSum(double*, size_t) override { return absl::OkStatus(); }
};

// Every rank's `mine`, by rank, on every rank (built on AllreduceSum, which is all a Collective
// has: sizes first, then each rank's bytes as floats in its own slice of a zeroed buffer; a
// float holds 0..255 exactly and adding zeros is exact). For small payloads such as eval
// shards, not bulk data. InvalidArgument past 256 MiB in all.
absl::StatusOr<std::vector<std::string>> AllgatherBytes(Collective& c, const std::string& mine);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_COLLECTIVE_H_
