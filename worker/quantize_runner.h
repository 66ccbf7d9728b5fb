// Runs a quantize job (QuantizeSpec): model/quantize.h's QuantizeGguf on one worker, then the
// output registered as a "model" artifact whose parent is the input (registered too if new).
#ifndef ANVIL_WORKER_QUANTIZE_RUNNER_H_
#define ANVIL_WORKER_QUANTIZE_RUNNER_H_

#include "anvil/v1/workers.pb.h"
#include "worker/task_runner.h"

namespace anvil::worker {

TaskOutcome RunQuantizeTask(const v1::Task& task, const TaskEnvironment& env);

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_QUANTIZE_RUNNER_H_
