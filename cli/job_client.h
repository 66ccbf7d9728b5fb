// The Jobs-service client pieces the cluster commands share: submitting, following a job's
// events across coordinator restarts, the `anvil watch` rendering. The commands themselves live
// in cmd_cluster.cc (submit, jobs, watch, logs, cancel) and cmd_lifecycle_jobs.cc (eval-job,
// quantize-job, deploy).
#ifndef ANVIL_CLI_JOB_CLIENT_H_
#define ANVIL_CLI_JOB_CLIENT_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "anvil/v1/jobs.pb.h"
#include "cli/cluster_client.h"
#include "cli/commands.h"

namespace anvil::cli {

// `flags` followed by the cluster connection flags (ClusterFlags()).
std::vector<FlagSpec> WithClusterFlags(std::vector<FlagSpec> flags);

std::string StateName(v1::JobState s);  // "RUNNING"
bool IsFinal(v1::JobState s);

// Follows a job's events until it is final (or `on_event` returns false), reconnecting from the
// last seq seen while the coordinator is unreachable, for up to `reconnect_s` seconds in a row.
// Returns the last state seen.
absl::StatusOr<v1::JobState> FollowJob(const ClusterConnection& c, const std::string& job_id,
                                       int reconnect_s,
                                       const std::function<bool(const v1::JobEvent&)>& on_event);

// OK when the job SUCCEEDED; else Cancelled/Aborted with the job's reason.
absl::Status JobResult(const ClusterConnection& c, const std::string& job_id,
                       v1::JobState state);

// `anvil watch`: progress bar and state lines until the job ends; its result.
absl::Status WatchJob(const ClusterConnection& c, const std::string& job_id);

absl::StatusOr<v1::Job> SubmitJob(const ClusterConnection& c, const v1::SubmitJobRequest& req);

// cmd_lifecycle_jobs.cc: eval-job, quantize-job, deploy.
std::vector<Command> LifecycleJobCommands();

}  // namespace anvil::cli

#endif  // ANVIL_CLI_JOB_CLIENT_H_
