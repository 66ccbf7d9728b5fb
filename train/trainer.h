// The local fine-tuning run behind `anvil finetune RECIPE.yaml`: loads the model and data,
// trains (full, LoRA or QLoRA; SFT, plain LM or DPO loss) with gradient accumulation, clipping,
// AdamW and the schedule, writes a metrics JSONL and atomic checkpoints, resumes from the newest
// complete checkpoint exactly, and exports adapters / a merged GGUF at the end.
// The cluster's workers call the same function with their own hooks and a Collective: data
// parallel over ranks that each run a share of every step's micro-batches (train/collective.h).
#ifndef ANVIL_TRAIN_TRAINER_H_
#define ANVIL_TRAIN_TRAINER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "train/collective.h"
#include "train/recipe.h"

namespace anvil::train {

// One optimizer step, as written to the metrics file (one JSON object per line).
struct StepMetrics {
  int64_t step = 0, total_steps = 0;
  double loss = 0.0;        // mean over the step's trained tokens (SFT/LM) or pairs (DPO)
  double lr = 0.0;          // the learning rate this step used
  double grad_norm = 0.0;   // before clipping
  int64_t tokens = 0;       // tokens forwarded this step (policy only), all ranks together
  double tokens_per_s = 0.0;  // all ranks together
  double elapsed_s = 0.0;   // since this process started training
  double eta_s = 0.0;
  // Data parallel: this rank's time in the step's gradient allreduce (waiting for slower ranks
  // included); 0 in a single process.
  double allreduce_s = 0.0;
  // DPO only (TRL's names): rewards/chosen, rewards/rejected, rewards/accuracies,
  // rewards/margins, logps/chosen, logps/rejected.
  bool dpo = false;
  double rewards_chosen = 0, rewards_rejected = 0, reward_accuracy = 0, reward_margin = 0;
  double logps_chosen = 0, logps_rejected = 0;
  std::string ToJson() const;  // one line, no newline; doubles printed to round-trip exactly
};

struct RunOptions {
  bool resume = true;        // continue from the newest verified checkpoint in checkpoint.dir
  bool progress = true;      // the live progress line on stderr
  bool progress_tty = true;  // redraw it in place (\r); false: one line per log.every steps
  // Stop after this step as if the process were killed there (no exports): 0 = run to the end.
  int64_t stop_after_step = 0;
  std::function<void(const StepMetrics&)> on_step;  // optional, after each step, on every rank
  // Checked before each step; when it returns true on any rank, every rank stops at that same
  // step (the vote travels with the step's gradients) and RunFinetune returns Cancelled. The
  // newest checkpoint stays the place to resume from.
  std::function<bool()> should_stop;
  // Data parallel (null: one process). The global batch is micro_batch * grad_accum whatever
  // the world size: rank r runs the step's micro-batches i with i % world_size == r, one
  // AllreduceSum sums the gradients and loss sums, and every rank clips and steps identically,
  // so the loss curve and the weights match one process within float rounding, and a resumed
  // run may use another world size. grad_accum should be a multiple of the world size (a rank
  // without a micro-batch idles through the step). Every rank resumes from the newest
  // checkpoint of the shared checkpoint.dir (FailedPrecondition if the ranks disagree); only
  // rank 0 writes checkpoints, the metrics file, the progress line and exports. Evaluation on
  // data.eval is split over the ranks the same way, and every rank gets its result.
  Collective* collective = nullptr;
};

struct RunResult {
  int64_t resumed_from_step = 0;  // 0: a fresh start
  int64_t last_step = 0;
  int64_t total_steps = 0;
  std::vector<double> losses;     // of the steps this process ran
  double eval_loss = -1.0;        // mean loss on data.eval when given (-1: none)
  double eval_reward_accuracy = -1.0;  // DPO: rewards/accuracies on data.eval
  std::vector<std::string> outputs;  // files and directories written at the end (rank 0)
};

// InvalidArgument / NotFound / FailedPrecondition with the file and field for bad recipes,
// data or checkpoints; DataLoss is never returned for a corrupt checkpoint — it is skipped with
// a warning, and resuming falls back to the previous complete one. Cancelled when should_stop
// stopped the run; a collective's DeadlineExceeded / Unavailable when a peer rank is gone.
absl::StatusOr<RunResult> RunFinetune(const Recipe& recipe, const RunOptions& options);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_TRAINER_H_
