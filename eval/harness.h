// The evaluation harness: runs a task (task.h) on a loaded model. Generation tasks answer each
// record greedily (or seeded sampling) and score the answers with the task's metrics;
// multiple-choice tasks compare the log-likelihood of each choice's continuation (acc, and
// acc_norm by byte length as lm-evaluation-harness does); perplexity tasks reuse
// model/perplexity.h. Headline numbers carry bootstrap 95% CIs (bootstrap.h). The result file is
// byte-identical across reruns: fixed key order, fixed float formatting, no timestamps.
#ifndef ANVIL_EVAL_HARNESS_H_
#define ANVIL_EVAL_HARNESS_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/bootstrap.h"
#include "eval/task.h"
#include "model/llama_model.h"

namespace anvil::eval {

struct HarnessOptions {
  int64_t limit = 0;  // score at most this many records (0 = all); perplexity ignores it
  int threads = 2;
  std::optional<PromptStrategy> strategy;  // overrides the task's prompt.strategy
  BootstrapOptions bootstrap;
  std::string model_name;  // recorded in results (e.g. the path as given)
  // Sharding (eval jobs on several workers): this run scores only the records i with
  // i % num_shards == shard, each exactly as an unsharded run would (record i's prompt and seed
  // depend on i alone), and leaves `metrics` empty; MergeShards (eval/shards.h) puts the shards
  // back together. A perplexity task is not split: shard 0 computes it, the others return
  // without it.
  int64_t shard = 0;
  int64_t num_shards = 1;
  // Called after each record (done, total).
  std::function<void(int64_t, int64_t)> progress;
  // Polled between records: true stops the run (RunTask returns Cancelled).
  std::function<bool()> should_stop;
};

struct MetricSummary {
  std::string name;
  ConfidenceInterval ci;  // mean and bootstrap interval of the per-example scores
  int64_t n = 0;
};

struct ExampleResult {
  std::string id;
  std::string prediction;  // the scored answer (chain-of-thought: the extracted one)
  std::string output;      // chain-of-thought: the whole generation ("" otherwise)
  std::string reference;
  std::vector<std::pair<std::string, double>> scores;  // in metric order
  std::vector<double> loglikelihoods;                  // multiple_choice, per choice
};

struct PerplexitySummary {
  double ppl = 0, uncertainty = 0, mean_nll = 0;
  int64_t scored_tokens = 0, chunks = 0, ctx = 0;
  std::vector<double> running_ppl;
};

struct TaskResult {
  std::string task_name, task_file, kind, data_file, data_sha256, model;
  std::string prompt_name, prompt_hash, strategy;  // empty for perplexity
  int64_t max_tokens = 0;
  double temperature = 0;
  uint64_t seed = 0;
  std::vector<MetricSummary> metrics;
  std::vector<ExampleResult> examples;
  std::optional<PerplexitySummary> perplexity;
  double seconds = 0;  // wall time; not written to the result file
};

// Runs `task` on `model`. FailedPrecondition when the model has no chat template (generate and
// multiple_choice render through it); errors from the data files name file:line.
absl::StatusOr<TaskResult> RunTask(const LlamaModel& model, const Task& task,
                                   const HarnessOptions& options);

// Fills result->metrics from result->examples: per metric, the mean of the per-example scores
// with its bootstrap CI. InvalidArgument when there are no examples.
absl::Status SummarizeExamples(const BootstrapOptions& bootstrap, TaskResult* result);

// The result file: the JSON document described in docs (keys in a fixed order, floats "%.6f").
std::string ResultsJson(const TaskResult& result);

// The headline metric of a result: the first metric (acc for multiple_choice, ppl for perplexity).
double HeadlineValue(const TaskResult& result);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_HARNESS_H_
