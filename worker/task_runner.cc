// RunTask: Task -> Recipe -> (rendezvous, Gloo mesh) -> RunFinetune. The rendezvous keys of
// the mesh live under the task's namespace, prefixed "gloo/" so other uses of the namespace
// (an NCCL unique id later) cannot collide with them. After a successful run rank 0 registers
// the outputs with the coordinator's artifact registry (worker/artifact_upload.h) and adds
// "artifact:<id>" entries to the outputs it reports.
#include "worker/task_runner.h"

#include <gloo/rendezvous/prefix_store.h>

#include <atomic>
#include <cstdio>
#include <exception>

#include "absl/strings/str_cat.h"
#include "rpc/job_spec.h"
#include "worker/artifact_upload.h"
#include "worker/deploy_runner.h"
#include "worker/eval_runner.h"
#include "worker/quantize_runner.h"
#include "worker/gloo_collective.h"
#ifdef ANVIL_WITH_NCCL
#include "worker/nccl_collective.h"
#endif
#include "worker/rendezvous_store.h"

namespace anvil::worker {
namespace {

absl::Status Annotate(const absl::Status& s, const v1::Task& task) {
  return absl::Status(s.code(), absl::StrCat("task ", task.task_id(), " (job ", task.job_id(),
                                             " attempt ", task.attempt(), ", rank ", task.rank(),
                                             "/", task.world_size(), "): ", s.message()));
}

// Registers a finished run's base model and outputs; their ids, as "artifact:<id>" outputs.
absl::StatusOr<std::vector<std::string>> RegisterOutputs(const v1::Task& task,
                                                         const TaskEnvironment& env,
                                                         const std::string& model,
                                                         const train::RunResult& r) {
  FinetuneOutputs run;
  run.job_id = task.job_id();
  run.base_model = model;
  run.outputs = r.outputs;
  if (!r.losses.empty()) run.metrics["final_loss"] = absl::StrCat(r.losses.back());
  run.metrics["steps"] = absl::StrCat(r.last_step);
  if (r.eval_loss >= 0) run.metrics["eval_loss"] = absl::StrCat(r.eval_loss);
  ArtifactUploader uploader(env.channel, env.token);
  absl::StatusOr<std::vector<std::string>> ids = UploadFinetuneOutputs(uploader, run);
  if (!ids.ok()) return ids.status();
  for (std::string& id : *ids) id = "artifact:" + id;
  return ids;
}

absl::StatusOr<train::RunResult> Run(const v1::Task& task, const TaskEnvironment& env,
                                     std::string* model) {
  if (!task.spec().has_finetune()) {
    return absl::UnimplementedError("this worker runs finetune, eval, quantize and deploy tasks; the spec has none");
  }
  if (task.world_size() < 1 || task.rank() < 0 || task.rank() >= task.world_size()) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", task.rank(), " is not in [0, ",
                                                   task.world_size(), ")"));
  }
  absl::StatusOr<train::Recipe> recipe = rpc::RecipeFromSpec(task.spec().finetune());
  if (!recipe.ok()) return recipe.status();
  recipe->train.threads = env.threads;
  *model = recipe->model;

  absl::StatusOr<std::unique_ptr<train::Collective>> collective = ConnectCollective(task, env);
  if (!collective.ok()) return collective.status();

  // Set by the coordinator's answer to a progress report; read between steps.
  std::atomic<bool> told_to_stop{false};
  train::RunOptions options;
  options.progress = env.progress && task.rank() == 0;
  options.progress_tty = false;
  options.collective = collective->get();
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

absl::Status AddRegistered(const v1::Task& task,
                           const absl::StatusOr<std::vector<std::string>>& ids,
                           std::vector<std::string>* outputs) {
  if (ids.ok()) {
    outputs->insert(outputs->end(), ids->begin(), ids->end());
    return absl::OkStatus();
  }
  if (absl::IsUnimplemented(ids.status())) {
    // A coordinator without the registry: the files on disk are the result.
    std::fprintf(stderr, "task %s: outputs not registered (no artifact registry): %s\n",
                 task.task_id().c_str(), std::string(ids.status().message()).c_str());
    return absl::OkStatus();
  }
  return absl::Status(ids.status().code(),
                      absl::StrCat("registering the outputs: ", ids.status().message()));
}

absl::StatusOr<std::unique_ptr<train::Collective>> ConnectCollective(const v1::Task& task,
                                                                     const TaskEnvironment& env) {
  std::unique_ptr<train::Collective> collective;
  if (task.world_size() > 1 && env.collective == "nccl") {
#ifdef ANVIL_WITH_NCCL
    RendezvousStore rpc_store(env.channel, env.token, task.rendezvous_namespace(),
                              env.collective_timeout);
    gloo::rendezvous::PrefixStore store("nccl", rpc_store);
    absl::StatusOr<std::unique_ptr<NcclCollective>> c = NcclCollective::Connect(
        {task.rank(), task.world_size(), env.cuda_device, env.collective_timeout}, store);
    if (!c.ok()) return c.status();
    collective = std::move(*c);
#else
    return absl::UnimplementedError("this worker was built without NCCL (CUDA off or no NCCL)");
#endif
  } else if (task.world_size() > 1) {
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
  return collective;
}

TaskOutcome RunTask(const v1::Task& task, const TaskEnvironment& env) {
  if (task.spec().has_eval()) return RunEvalTask(task, env);
  if (task.spec().has_quantize()) return RunQuantizeTask(task, env);
  if (task.spec().has_deploy()) return RunDeployTask(task, env);
  TaskOutcome out;
  try {
    std::string model;
    absl::StatusOr<train::RunResult> r = Run(task, env, &model);
    if (!r.ok()) {
      out.status = Annotate(r.status(), task);
      return out;
    }
    out.outputs = r->outputs;
    if (task.rank() == 0) {
      absl::Status s = AddRegistered(task, RegisterOutputs(task, env, model, *r), &out.outputs);
      if (!s.ok()) out.status = Annotate(s, task);
    }
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
