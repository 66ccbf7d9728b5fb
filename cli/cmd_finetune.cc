// anvil finetune RECIPE.yaml: a local, single-process fine-tuning run (train/trainer.h) with a
// live progress line, a metrics JSONL, checkpoints it resumes from, and exports at the end.
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "kernels/core/status_macros.h"
#include "train/recipe.h"
#include "train/trainer.h"

namespace anvil::cli {

Command FinetuneCommand() {
  Command c;
  c.spec = {"finetune",
            "Fine-tune a model as a recipe says (full, LoRA or QLoRA; SFT, LM or DPO loss). "
            "Resumes from the newest complete checkpoint in checkpoint.dir unless --fresh.",
            {"RECIPE.yaml"},
            {{"fresh", "", "", "ignore existing checkpoints and start from step 0"},
             {"steps", "N", "0", "override train.steps (0 = as the recipe says)"},
             {"quiet", "", "", "no progress output"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(train::Recipe recipe, train::LoadRecipe(args.positional(0)));
    ANVIL_ASSIGN_OR_RETURN(int64_t steps, args.GetInt("steps"));
    if (steps < 0) return absl::InvalidArgumentError("--steps must be >= 0");
    if (steps > 0) recipe.train.steps = steps;
    train::RunOptions opts;
    opts.resume = !args.GetBool("fresh");
    opts.progress = !args.GetBool("quiet");
    opts.progress_tty = isatty(STDERR_FILENO) != 0;
    ANVIL_ASSIGN_OR_RETURN(train::RunResult r, train::RunFinetune(recipe, opts));
    if (r.losses.empty()) {
      std::printf("nothing to do: the checkpoint at step %lld is the last step\n",
                  static_cast<long long>(r.resumed_from_step));
    } else {
      std::printf("trained steps %lld..%lld of %lld: loss %.4f -> %.4f\n",
                  static_cast<long long>(r.resumed_from_step + 1), static_cast<long long>(r.last_step),
                  static_cast<long long>(r.total_steps), r.losses.front(), r.losses.back());
    }
    if (r.eval_loss >= 0) std::printf("eval loss %.4f\n", r.eval_loss);
    if (r.eval_reward_accuracy >= 0) {
      std::printf("eval reward accuracy %.3f\n", r.eval_reward_accuracy);
    }
    for (const std::string& o : r.outputs) std::printf("wrote %s\n", o.c_str());
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
