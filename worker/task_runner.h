// Runs one Task (one rank of one attempt of a job) in this process: the recipe from the job's
// FinetuneSpec, the Gloo collective through the coordinator's rendezvous, RunFinetune with the
// agent's stop flag and progress hook. Registration, heartbeats and reporting the outcome are
// the agent's (worker/agent.h). Nothing here throws or exits: every failure is the outcome.
#ifndef ANVIL_WORKER_TASK_RUNNER_H_
#define ANVIL_WORKER_TASK_RUNNER_H_

#include <grpcpp/channel.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "anvil/v1/workers.pb.h"
#include "train/collective.h"
#include "train/trainer.h"

namespace anvil::worker {

struct TaskEnvironment {
  std::shared_ptr<grpc::Channel> channel;  // to the coordinator (Rendezvous service)
  std::string token;
  int threads = 1;                         // replaces the recipe's train.threads
  std::string gloo_host = "127.0.0.1";     // this worker's address for its peers
  std::chrono::milliseconds collective_timeout{60000};
  // "gloo" (CPU, TCP) or "nccl" (CUDA builds with NCCL: the ranks' GPUs do the reduction).
  std::string collective = "gloo";
  int cuda_device = 0;                     // for "nccl"
  bool progress = true;                    // rank 0's step lines on stderr
  // Polled between steps: true stops the task (RunFinetune returns Cancelled).
  std::function<bool()> should_stop;
  // Rank 0, after each step; returns true when the coordinator says to stop.
  std::function<bool(const train::StepMetrics&)> report_step;
  // A line for the job's log (`anvil logs`); returns true when the coordinator says to stop.
  std::function<bool(const std::string&)> report_log;
  // The anvil-server binary deployments run; empty: next to this executable, then
  // ../server/anvil-server from it, then $PATH.
  std::string server_binary;
};

struct TaskOutcome {
  absl::Status status;               // Cancelled when stopped
  std::vector<std::string> outputs;  // rank 0: files and directories written
};

TaskOutcome RunTask(const v1::Task& task, const TaskEnvironment& env);

// Appends registered artifacts ("artifact:<id>" entries) to `outputs`. A coordinator without the
// registry (Unimplemented) only gets a warning: the files on disk are the result. Any other
// error is returned ("registering the outputs: ...") and fails the task.
absl::Status AddRegistered(const v1::Task& task,
                           const absl::StatusOr<std::vector<std::string>>& ids,
                           std::vector<std::string>* outputs);

// The task's collective: null for world size 1, else Gloo (or NCCL) through the coordinator's
// rendezvous under the task's namespace.
absl::StatusOr<std::unique_ptr<train::Collective>> ConnectCollective(const v1::Task& task,
                                                                     const TaskEnvironment& env);

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_TASK_RUNNER_H_
