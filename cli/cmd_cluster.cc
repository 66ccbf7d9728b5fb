// The cluster's job commands: anvil submit, eval-job, jobs, watch, logs, cancel. Thin clients of the Jobs
// service (proto/anvil/v1/jobs.proto); `anvil up` (cmd_up.cc) starts a local cluster for them.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "anvil/v1/jobs.grpc.pb.h"
#include "cli/cluster_client.h"
#include "cli/job_client.h"
#include "cli/commands.h"
#include "kernels/core/status_macros.h"
#include "rpc/job_spec.h"
#include "rpc/status.h"

namespace anvil::cli {
namespace {

Command SubmitCommand() {
  Command c;
  c.spec = {"submit",
            "Submit a fine-tuning recipe as a job to the cluster; prints the job id.",
            {"RECIPE.yaml"},
            WithClusterFlags({{"workers", "N", "1", "workers the job needs together (gang)"},
                         {"max-workers", "N", "0", "elastic: run on up to N (default: --workers)"},
                         {"priority", "P", "0", "higher runs first"},
                         {"retries", "N", "2", "failed attempts retried before the job fails"},
                         {"name", "NAME", "", "shown by anvil jobs (default: the recipe's name)"},
                         {"request-id", "ID", "", "idempotency key: resubmitting returns the same job"},
                         {"watch", "", "", "then follow it like anvil watch"}})};
  c.run = [](const Args& args) -> absl::Status {
    const std::string path = args.positional(0);
    ANVIL_ASSIGN_OR_RETURN(v1::FinetuneSpec ft, rpc::LoadFinetuneSpec(path));
    v1::SubmitJobRequest req;
    req.set_request_id(args.Get("request-id"));
    v1::JobSpec* spec = req.mutable_spec();
    *spec->mutable_finetune() = std::move(ft);
    std::string name = args.Get("name");
    if (name.empty()) name = path.substr(path.find_last_of('/') + 1);
    spec->set_name(name);
    ANVIL_ASSIGN_OR_RETURN(int64_t workers, args.GetInt("workers"));
    ANVIL_ASSIGN_OR_RETURN(int64_t max_workers, args.GetInt("max-workers"));
    ANVIL_ASSIGN_OR_RETURN(int64_t priority, args.GetInt("priority"));
    ANVIL_ASSIGN_OR_RETURN(int64_t retries, args.GetInt("retries"));
    spec->set_min_workers(static_cast<int32_t>(workers));
    spec->set_max_workers(static_cast<int32_t>(max_workers));
    spec->set_priority(static_cast<int32_t>(priority));
    spec->set_max_retries(static_cast<int32_t>(retries));
    ANVIL_RETURN_IF_ERROR(rpc::ValidateJobSpec(*spec));
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    auto stub = v1::Jobs::NewStub(conn.channel);
    grpc::ClientContext ctx;
    conn.Prepare(&ctx);
    v1::Job job;
    ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->SubmitJob(&ctx, req, &job)));
    std::printf("%s\n", job.job_id().c_str());
    std::fflush(stdout);
    if (args.GetBool("watch")) return WatchJob(conn, job.job_id());
    return absl::OkStatus();
  };
  return c;
}

Command JobsCommand() {
  Command c;
  c.spec = {"jobs", "List the cluster's jobs, newest first.", {},
            WithClusterFlags({{"all", "", "", "every job (default: the newest 50)"}})};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    auto stub = v1::Jobs::NewStub(conn.channel);
    std::printf("%-12s %-10s %-7s %-12s %-10s %-24s %s\n", "JOB", "STATE", "ATTEMPT", "STEP",
                "LOSS", "NAME", "REASON");
    v1::ListJobsRequest req;
    req.set_page_size(50);
    for (;;) {
      grpc::ClientContext ctx;
      conn.Prepare(&ctx);
      v1::ListJobsResponse resp;
      ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->ListJobs(&ctx, req, &resp)));
      for (const v1::Job& j : resp.jobs()) {
        const auto& p = j.progress();
        std::printf("%-12s %-10s %-7d %-12s %-10s %-24s %s\n", j.job_id().c_str(),
                    StateName(j.state()).c_str(), j.attempt(),
                    absl::StrCat(p.step(), "/", p.total_steps()).c_str(),
                    p.step() > 0 ? absl::StrFormat("%.4f", p.loss()).c_str() : "-",
                    j.spec().name().substr(0, 24).c_str(), j.reason().c_str());
      }
      if (!args.GetBool("all") || resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
    return absl::OkStatus();
  };
  return c;
}

Command WatchCommand() {
  Command c;
  c.spec = {"watch",
            "Follow a job: a live progress bar with loss and tokens/s; exits 0 when the job "
            "succeeds, 1 when it fails or is cancelled.",
            {"JOB"}, WithClusterFlags({})};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    return WatchJob(conn, args.positional(0));
  };
  return c;
}

Command LogsCommand() {
  Command c;
  c.spec = {"logs", "Print a job's log lines and state changes, following it until it ends.",
            {"JOB"}, WithClusterFlags({})};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    const std::string job_id = args.positional(0);
    ANVIL_ASSIGN_OR_RETURN(v1::JobState st, FollowJob(conn, job_id, 60, [&](const v1::JobEvent& ev) {
                             if (ev.has_log()) {
                               std::printf("[%s] %s\n", ev.log().worker_id().c_str(),
                                           ev.log().text().c_str());
                             } else if (ev.has_state()) {
                               std::printf("-- %s (attempt %d)%s%s\n",
                                           StateName(ev.state().state()).c_str(),
                                           ev.state().attempt(),
                                           ev.state().reason().empty() ? "" : ": ",
                                           ev.state().reason().c_str());
                             }
                             std::fflush(stdout);
                             return true;
                           }));
    (void)st;
    return absl::OkStatus();
  };
  return c;
}

Command CancelCommand() {
  Command c;
  c.spec = {"cancel", "Cancel a job (a running one stops within seconds).", {"JOB"},
            WithClusterFlags({})};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    auto stub = v1::Jobs::NewStub(conn.channel);
    grpc::ClientContext ctx;
    conn.Prepare(&ctx);
    v1::CancelJobRequest req;
    req.set_job_id(args.positional(0));
    v1::Job job;
    ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->CancelJob(&ctx, req, &job)));
    std::printf("%s %s\n", job.job_id().c_str(), StateName(job.state()).c_str());
    return absl::OkStatus();
  };
  return c;
}

}  // namespace

std::vector<Command> ClusterCommands() {
  std::vector<Command> all = {SubmitCommand(), JobsCommand(), WatchCommand(),
                              LogsCommand(),   CancelCommand(),  UpCommand()};
  for (Command& c : ArtifactCommands()) all.push_back(std::move(c));
  for (Command& c : LifecycleJobCommands()) all.push_back(std::move(c));
  return all;
}

}  // namespace anvil::cli
