// RunTask: Task -> Recipe -> (rendezvous, Gloo mesh) -> RunFinetune. The rendezvous keys of
// the mesh live under the task's namespace, prefixed "gloo/" so other uses of the namespace
// (an NCCL unique id later) cannot collide with them.
#include "worker/task_runner.h"

#include <gloo/rendezvous/prefix_store.h>

#include <atomic>
#include <exception>

#include "absl/strings/str_cat.h"
#include "rpc/job_spec.h"
#include "worker/gloo_collective.h"
#include "worker/rendezvous_store.h"

namespace anvil::worker {
namespace {

absl::Status Annotate(const absl::Status& s, const v1::Task& task) {
  return absl::Status(s.code(), absl::StrCat("task ", task.task_id(), " (job ", task.job_id(),
                                             " attempt ", task.attempt(), ", rank ", task.rank(),
                                             "/", task.world_size(), "): ", s.message()));
}

absl::StatusOr<train::RunResult> Run(const v1::Task& task, const TaskEnvironment& env) {
  if (!task.spec().has_finetune()) {
    return absl::UnimplementedError("this worker runs finetune tasks only; the spec has none");
  }
  if (task.world_size() < 1 || task.rank() < 0 || task.rank() >= task.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", task.rank(), " is not in [0, ",
                                                   task.world_size(), ")"));
  }
  absl::StatusOr<train::Recipe> recipe = rpc::RecipeFromSpec(task.spec().finetune());
  if (!recipe.ok()) return recipe.status();
  recipe->train.threads = env.threads;

  std::unique_ptr<GlooCollective> collective;
  if (task.world_size() > 1) {
    RendezvousStore rpc_store(env.channel, env.token, task.rendezvous_namespace(),
                              env.collective_timeout);
    gloo::rendezvous::PrefixStore store("gloo", rpc_store);
    GlooOptions go;
    go.rank = task.rank();
    go.world_size = task.world_size();
    go.hostname = env.gloo_host;
    go.timeout = env.collective_timeout;
    absl::StatusOr<std::unique_ptr<GlooCollective>> c = GlooCollective::Connect(go, store);
    if (!c.ok()) return c.status();
    collective = std::move(*c);
  }

  // Set by the coordinator's answer to a progress report; read between steps.
  std::atomic<bool> told_to_stop{false};
  train::RunOptions options;
  options.progress = env.progress && task.rank() == 0;
  options.progress_tty = false;
  options.collective = collective.get();
  options.should_stop = [&] {
    return told_to_stop.load() || (env.should_stop && env.should_stop());
  };
  if (task.rank() == 0 && env.report_step) {
    options.on_step = [&](const train::StepMetrics& m) {
      if (env.report_step(m)) told_to_stop = true;
    };
  }
  return train::RunFinetune(*recipe, options);
}

}  // namespace

TaskOutcome RunTask(const v1::Task& task, const TaskEnvironment& env) {
  TaskOutcome out;
  try {
    absl::StatusOr<train::RunResult> r = Run(task, env);
    if (!r.ok()) {
      out.status = Annotate(r.status(), task);
      return out;
    }
    out.outputs = r->outputs;
  } catch (const std::exception& e) {
    // Nothing below should throw; if something does (e.g. bad_alloc), the task fails, not the
    // worker.
    out.status = Annotate(absl::InternalError(absl::StrCat("exception: ", e.what())), task);
  } catch (...) {
    out.status = Annotate(absl::InternalError("unknown exception"), task);
  }
  return out;
}

}  // namespace anvil::worker
