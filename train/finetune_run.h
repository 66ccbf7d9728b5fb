// Internal to train/: the state of one RunFinetune call, shared by trainer.cc (set-up, the
// step loop, exports), trainer_state.cc (checkpoints, resume, the metrics file) and
// trainer_parallel.cc (what the ranks of a data-parallel run exchange).
#ifndef ANVIL_TRAIN_FINETUNE_RUN_H_
#define ANVIL_TRAIN_FINETUNE_RUN_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/llama_model.h"
#include "model/trainable_llama.h"
#include "train/data_order.h"
#include "train/example.h"
#include "train/optimizer.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace anvil::train {

class FinetuneRun {
 public:
  FinetuneRun(const Recipe& recipe, const RunOptions& options)
      : recipe_(recipe), options_(options) {}
  ~FinetuneRun();  // closes the metrics file
  FinetuneRun(const FinetuneRun&) = delete;
  FinetuneRun& operator=(const FinetuneRun&) = delete;
  absl::StatusOr<RunResult> Run();

 private:
  // trainer.cc
  absl::Status Load();
  // *stopped: some rank's should_stop voted to stop; the step was not applied.
  absl::Status TrainStep(int64_t step, StepMetrics* m, bool* stopped);
  absl::Status SftMicroBatch(const std::vector<int64_t>& ids, int64_t step, int64_t micro,
                             double denom, double* loss_sum, int64_t* tokens);
  absl::Status DpoMicroBatch(const std::vector<int64_t>& ids, int64_t step, int64_t micro,
                             int64_t denom, StepMetrics* m, int64_t* tokens);
  // Mean SFT/LM cross-entropy, or mean DPO loss (and its reward accuracy), on data.eval.
  absl::StatusOr<double> EvalLoss(double* reward_accuracy);
  absl::Status Export(RunResult* result);
  void Progress(const StepMetrics& m, bool last);

  // trainer_parallel.cc
  int rank() const { return options_.collective != nullptr ? options_.collective->rank() : 0; }
  int world() const {
    return options_.collective != nullptr ? options_.collective->world_size() : 1;
  }
  bool leader() const { return rank() == 0; }
  // Whether this rank runs micro-batch `micro` of a step (also eval batches).
  bool Mine(int64_t micro) const { return micro % world() == rank(); }
  // A step's micro-batches for this rank, given each one's cost (its tokens): longest first,
  // each to the least-loaded rank, so ranks finish their share at about the same time. Every
  // rank computes the same assignment from the same ids. trainer_parallel.cc.
  std::vector<bool> MyMicroBatches(const std::vector<int64_t>& costs) const;
  // Sums every trainable gradient and stats[0, n) over the ranks (no-op for one process).
  absl::Status SumOverRanks(bool gradients, double* stats, size_t n);
  // All ranks resumed from the same step and see the same data: FailedPrecondition otherwise.
  absl::Status AgreeOnStart(int64_t resumed_step);

  // trainer_state.cc
  std::string CheckpointDir() const;
  absl::Status SaveCheckpoint(int64_t step);
  // Restores the newest verified checkpoint; returns its step, or 0 when there is none.
  absl::StatusOr<int64_t> Resume();
  // Opens the metrics file: truncated on a fresh start; on resume, only the lines of steps
  // <= resumed_step are kept (a killed run may have logged steps past its last checkpoint).
  absl::Status OpenMetrics(int64_t resumed_step);
  absl::Status AppendMetrics(const StepMetrics& m);

  const Recipe& recipe_;
  const RunOptions& options_;
  std::unique_ptr<LlamaModel> base_;
  std::unique_ptr<TrainableLlama> model_;
  std::unique_ptr<TrainableLlama> reference_;  // DPO with full fine-tuning: the frozen base
  std::vector<SequenceExample> sft_;
  std::vector<PreferenceExample> pref_;
  std::unique_ptr<DataOrder> order_;
  std::unique_ptr<AdamWOptimizer> optimizer_;
  int64_t total_steps_ = 0;
  int metrics_fd_ = -1;
  std::chrono::steady_clock::time_point start_;
  int64_t steps_run_ = 0;
  int64_t tokens_run_ = 0;
  std::vector<float> ce_, lse_, dloss_;
  std::vector<float> grad_buf_;  // all trainable gradients end to end, for the allreduce
};

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_FINETUNE_RUN_H_
