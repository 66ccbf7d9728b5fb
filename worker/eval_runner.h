// Runs one rank of an eval job (EvalSpec): this rank's share of the task's records (round-robin
// by rank), the shards gathered to rank 0 over the task's collective, merged into the result an
// unsharded run gives (eval/shards.h), written to spec.output and registered as an "eval"
// artifact whose parent is the model. Progress: rank 0 reports its own records as steps.
#ifndef ANVIL_WORKER_EVAL_RUNNER_H_
#define ANVIL_WORKER_EVAL_RUNNER_H_

#include "anvil/v1/workers.pb.h"
#include "worker/task_runner.h"

namespace anvil::worker {

TaskOutcome RunEvalTask(const v1::Task& task, const TaskEnvironment& env);

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_EVAL_RUNNER_H_
