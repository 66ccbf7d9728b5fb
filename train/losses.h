// Training losses over the logits of a batch (model/trainable_llama.h), each computing the
// loss and, when asked, writing dL/dlogits in place for the backward pass:
// - next-token cross-entropy, mean over the trained targets of a whole optimizer step (the
//   denominator is passed in, so gradient accumulation matches one big batch, as HF's
//   num_items_in_batch does);
// - DPO (notes §5.4, TRL's sigmoid loss) from per-sequence summed log-probs, with TRL's metrics.
#ifndef ANVIL_TRAIN_LOSSES_H_
#define ANVIL_TRAIN_LOSSES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace anvil::train {

// Per-row cross-entropy of logits [N][V] against targets [N] (negative = not counted).
// ce [N] gets each row's loss (0 where not counted), lse [N] its log-sum-exp.
absl::Status RowCrossEntropy(const ExecContext& ex, const float* logits, const int32_t* targets,
                             int64_t n, int64_t v, std::vector<float>* ce, std::vector<float>* lse);

// dlogits (in place over logits) = dloss[t] * (softmax - onehot) per row.
absl::Status CrossEntropyGrad(const ExecContext& ex, float* logits, const float* lse,
                              const int32_t* targets, const float* dloss, int64_t n, int64_t v);

struct CeSums {
  double loss_sum = 0.0;  // sum of counted rows' losses
  int64_t count = 0;      // counted rows
};
// Sum and count of the counted rows of ce.
CeSums SumCounted(const std::vector<float>& ce, const int32_t* targets, int64_t n);

// Per-sequence log-prob = -(sum of the sequence's counted row losses), for sequences laid out
// by starts [B + 1] (model/trainable_llama.h SequenceBatch).
std::vector<double> SequenceLogps(const std::vector<float>& ce, const std::vector<int64_t>& starts);

struct DpoConfig {
  double beta = 0.1;
};

struct DpoStats {
  double loss = 0.0;               // mean over pairs of -log sigmoid(beta * delta)
  double rewards_chosen = 0.0;     // mean beta * (logp_c - ref_c)
  double rewards_rejected = 0.0;   // mean beta * (logp_r - ref_r)
  double reward_accuracy = 0.0;    // mean [reward_c > reward_r]
  double reward_margin = 0.0;      // mean (reward_c - reward_r)
  double logps_chosen = 0.0;       // mean policy log-probs
  double logps_rejected = 0.0;
  std::vector<double> d_logp_chosen, d_logp_rejected;  // [P] dL/dlogp (loss mean over `denom`)
};
// P pairs. `denom` is the number of pairs the loss is averaged over (the whole optimizer step's
// pairs under gradient accumulation; P for one batch). InvalidArgument for mismatched sizes.
absl::StatusOr<DpoStats> DpoLoss(const std::vector<double>& policy_chosen,
                                 const std::vector<double>& policy_rejected,
                                 const std::vector<double>& ref_chosen,
                                 const std::vector<double>& ref_rejected, const DpoConfig& config,
                                 int64_t denom);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_LOSSES_H_
