// The optimizer step of training: global-norm gradient clipping and AdamW (PyTorch semantics,
// kernels/adamw.h) over a list of TrainParams, with the first and second moments it owns; and
// the learning-rate schedule (linear warmup, then cosine, linear or constant, as HF's
// get_*_schedule_with_warmup).
#ifndef ANVIL_TRAIN_OPTIMIZER_H_
#define ANVIL_TRAIN_OPTIMIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kernels/backend.h"
#include "model/trainable_llama.h"
#include "train/recipe.h"  // LrDecay

namespace anvil::train {

struct AdamWConfig {
  double lr = 2e-4;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // applied to params with decay = true only
};

class AdamWOptimizer {
 public:
  explicit AdamWOptimizer(const AdamWConfig& config) : config_(config) {}

  // Global L2 norm of all gradients (before clipping). When max_norm > 0 and the norm exceeds
  // it, scales every gradient by max_norm / (norm + 1e-6) in float, as
  // torch.nn.utils.clip_grad_norm_ does. Runs on the context's pool in fixed chunks whose
  // partial sums are added in order, so the result does not depend on the thread count.
  double ClipGradNorm(const ExecContext& ex, std::vector<TrainParam>* params,
                      double max_norm) const;

  // One AdamW step at learning rate `lr` (moments are created on the first call, sized like
  // the params; FailedPrecondition if the params changed shape since).
  absl::Status Step(const ExecContext& ex, std::vector<TrainParam>* params, double lr);

  int64_t step() const { return step_; }
  // State, for checkpoints: moments per param, in params order.
  std::vector<std::vector<float>>& m() { return m_; }
  std::vector<std::vector<float>>& v() { return v_; }
  void set_step(int64_t s) { step_ = s; }
  const AdamWConfig& config() const { return config_; }

 private:
  AdamWConfig config_;
  int64_t step_ = 0;
  std::vector<std::vector<float>> m_, v_;
};

struct ScheduleConfig {
  int64_t warmup_steps = 0;
  LrDecay decay = LrDecay::kCosine;
  double min_lr_ratio = 0.0;  // the decay ends at lr * min_lr_ratio
};

// The learning rate for optimizer step `step` (1-based) of `total`: HF's lambda evaluated at
// step - 1 (so with warmup the first step has lr * 0 ... as HF), times base_lr.
double LearningRate(double base_lr, const ScheduleConfig& s, int64_t step, int64_t total);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_OPTIMIZER_H_
