#include "worker/eval_runner.h"

#include <atomic>
#include <cstdio>
#include <exception>
#include <map>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "eval/harness.h"
#include "eval/shards.h"
#include "eval/task.h"
#include "kernels/core/status_macros.h"
#include "model/file_io.h"
#include "model/llama_model.h"
#include "rpc/job_spec.h"
#include "worker/artifact_upload.h"

namespace anvil::worker {
namespace {

absl::StatusOr<std::optional<eval::PromptStrategy>> StrategyOf(const v1::EvalSpec& spec) {
  if (!spec.has_strategy()) return std::nullopt;
  for (eval::PromptStrategy s : {eval::PromptStrategy::kZeroShot, eval::PromptStrategy::kFewShot,
                                 eval::PromptStrategy::kChainOfThought}) {
    if (spec.strategy() == eval::PromptStrategyName(s)) return s;
  }
  return absl::InvalidArgumentError(absl::StrCat("spec.eval.strategy: unknown \"",
                                                 spec.strategy(), "\""));
}

// Registry metadata: the task, the prompt strategy and every headline number.
std::map<std::string, std::string> ResultMetadata(const eval::TaskResult& r) {
  std::map<std::string, std::string> m;
  m["task"] = r.task_name;
  m["task_file"] = r.task_file;
  if (!r.strategy.empty()) m["strategy"] = r.strategy;
  m["examples"] = absl::StrCat(r.examples.size());
  if (r.perplexity) m["ppl"] = absl::StrFormat("%.6f", r.perplexity->ppl);
  for (const eval::MetricSummary& s : r.metrics) {
    m[s.name] = absl::StrFormat("%.6f [%.6f, %.6f]", s.ci.mean, s.ci.low, s.ci.high);
  }
  return m;
}

// This rank's records, then (rank 0) the whole result. Returns nullopt on ranks > 0.
absl::StatusOr<std::optional<eval::TaskResult>> Evaluate(const v1::Task& task,
                                                         const TaskEnvironment& env) {
  const v1::EvalSpec& spec = task.spec().eval();
  ANVIL_RETURN_IF_ERROR(rpc::ValidateEvalSpec(spec));
  const int rank = task.rank(), world = task.world_size();
  if (world < 1 || rank < 0 || rank >= world) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " is not in [0, ", world, ")"));
  }
  ANVIL_ASSIGN_OR_RETURN(std::optional<eval::PromptStrategy> strategy, StrategyOf(spec));
  ANVIL_ASSIGN_OR_RETURN(eval::Task evtask, eval::LoadTask(spec.task()));
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model, LlamaModel::Load(spec.model()));
  // Connected before the long part, so a missing peer fails the attempt early.
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<train::Collective> collective,
                         ConnectCollective(task, env));

  std::atomic<bool> told_to_stop{false};
  eval::HarnessOptions opts;
  opts.limit = spec.limit();
  opts.threads = spec.has_threads() ? spec.threads() : env.threads;
  opts.strategy = strategy;
  opts.model_name = spec.has_model_name() ? spec.model_name() : spec.model();
  opts.shard = rank;
  opts.num_shards = world;
  opts.should_stop = [&] { return told_to_stop.load() || (env.should_stop && env.should_stop()); };
  if (rank == 0 && env.report_step) {
    opts.progress = [&](int64_t done, int64_t total) {
      train::StepMetrics m;
      m.step = done;
      m.total_steps = total;
      if (env.report_step(m)) told_to_stop = true;
    };
  }
  ANVIL_ASSIGN_OR_RETURN(eval::TaskResult mine, eval::RunTask(*model, evtask, opts));
  if (world == 1) return std::optional<eval::TaskResult>(std::move(mine));

  ANVIL_ASSIGN_OR_RETURN(std::vector<std::string> docs,
                         train::AllgatherBytes(*collective,
                                               eval::SerializeShard(mine, rank, world)));
  if (rank != 0) return std::optional<eval::TaskResult>();
  std::vector<eval::Shard> shards;
  for (int r = 0; r < world; ++r) {
    ANVIL_ASSIGN_OR_RETURN(eval::Shard s,
                           eval::ParseShard(absl::StrCat("shard from rank ", r), docs[r]));
    shards.push_back(std::move(s));
  }
  ANVIL_ASSIGN_OR_RETURN(eval::TaskResult merged,
                         eval::MergeShards(std::move(shards), opts.bootstrap));
  return std::optional<eval::TaskResult>(std::move(merged));
}

absl::Status Annotate(const absl::Status& s, const v1::Task& task) {
  return absl::Status(s.code(), absl::StrCat("eval task ", task.task_id(), " (job ",
                                             task.job_id(), ", rank ", task.rank(), "/",
                                             task.world_size(), "): ", s.message()));
}

}  // namespace

TaskOutcome RunEvalTask(const v1::Task& task, const TaskEnvironment& env) {
  TaskOutcome out;
  try {
    absl::StatusOr<std::optional<eval::TaskResult>> r = Evaluate(task, env);
    if (!r.ok()) {
      out.status = Annotate(r.status(), task);
      return out;
    }
    if (!r->has_value()) return out;  // rank > 0: its part went to rank 0
    const v1::EvalSpec& spec = task.spec().eval();
    if (absl::Status s = WriteFileAtomically(spec.output(), eval::ResultsJson(**r)); !s.ok()) {
      out.status = Annotate(s, task);
      return out;
    }
    out.outputs.push_back(spec.output());
    ArtifactUploader uploader(env.channel, env.token);
    absl::StatusOr<std::string> id = UploadEvalResult(
        uploader, {task.job_id(), spec.model(), spec.output(), ResultMetadata(**r)});
    absl::StatusOr<std::vector<std::string>> ids =
        id.ok() ? absl::StatusOr<std::vector<std::string>>({"artifact:" + *id}) : id.status();
    if (absl::Status s = AddRegistered(task, ids, &out.outputs); !s.ok()) {
      out.status = Annotate(s, task);
    }
  } catch (const std::exception& e) {
    out.status = Annotate(absl::InternalError(absl::StrCat("exception: ", e.what())), task);
  } catch (...) {
    out.status = Annotate(absl::InternalError("unknown exception"), task);
  }
  return out;
}

}  // namespace anvil::worker
