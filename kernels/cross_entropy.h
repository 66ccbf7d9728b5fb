// Next-token cross-entropy over logits, per row, with masking: a row whose target is negative
// (PyTorch's ignore_index, -100 by convention) is ignored. The caller reduces the per-row losses
// (mean over counted rows for SFT, sum for DPO log-probs).
//
// loss[t] = lse[t] - logits[t][target[t]], where lse is the row's log-sum-exp; lse is also
// written out because the backward pass needs it: dlogits = softmax(logits) - onehot(target),
// i.e. exp(logits - lse) - onehot, scaled by the upstream gradient.
#ifndef ANVIL_KERNELS_CROSS_ENTROPY_H_
#define ANVIL_KERNELS_CROSS_ENTROPY_H_

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/backend.h"

namespace anvil {

struct CrossEntropyArgs {
  const float* logits = nullptr;    // [T][V]
  const int32_t* targets = nullptr; // [T]; < 0: ignored (loss 0); must be < V
  float* loss = nullptr;            // [T]
  float* lse = nullptr;             // [T]; may be null
  int64_t t = 0, v = 0;
};
// InvalidArgument when a target is >= V (host backends check before computing; the CUDA
// kernel records the first bad row and the launcher reports it after the kernel).
absl::Status CrossEntropy(const ExecContext& ctx, const CrossEntropyArgs& args);

// dlogits[t] = dloss[t] * (softmax(logits[t]) - onehot(targets[t])), using lse from CrossEntropy;
// rows with a negative target get zeros. dlogits may alias logits.
struct CrossEntropyBackwardArgs {
  const float* logits = nullptr;     // [T][V]
  const float* lse = nullptr;        // [T]
  const int32_t* targets = nullptr;  // [T]
  const float* dloss = nullptr;      // [T] upstream gradient per row (e.g. 1/N for a mean)
  float* dlogits = nullptr;          // [T][V] overwritten
  int64_t t = 0, v = 0;
};
// InvalidArgument when a target is >= V, as CrossEntropy (host backends check first; the CUDA
// kernel zeroes that row, records the first bad row and the launcher reports it).
absl::Status CrossEntropyBackward(const ExecContext& ctx, const CrossEntropyBackwardArgs& args);

}  // namespace anvil

#endif  // ANVIL_KERNELS_CROSS_ENTROPY_H_
