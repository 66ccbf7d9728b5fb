// Runs a deploy job (DeploySpec): anvil-server as a child process of the worker, serving the
// model until the job is cancelled (or the worker shuts down). Its "listening on" and "ready"
// lines go to the job's log; a stop request drains it with SIGTERM (in-flight requests finish)
// and the task ends Cancelled; a server that exits by itself fails the task with its exit code.
// The child gets SIGTERM if the worker dies (PR_SET_PDEATHSIG), so no server outlives its job.
#ifndef ANVIL_WORKER_DEPLOY_RUNNER_H_
#define ANVIL_WORKER_DEPLOY_RUNNER_H_

#include <string>
#include <vector>

#include "anvil/v1/workers.pb.h"
#include "worker/task_runner.h"

namespace anvil::worker {

TaskOutcome RunDeployTask(const v1::Task& task, const TaskEnvironment& env);

// anvil-server's argv for `spec` (binary first).
std::vector<std::string> DeployArgv(const std::string& binary, const v1::DeploySpec& spec,
                                    int default_threads);

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_DEPLOY_RUNNER_H_
