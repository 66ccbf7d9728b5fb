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
#include "cli/commands.h"
#include "kernels/core/status_macros.h"
#include "rpc/job_spec.h"
#include "rpc/status.h"

namespace anvil::cli {
namespace {

std::string StateName(v1::JobState s) {
  std::string n = v1::JobState_Name(s);
  constexpr char kPrefix[] = "JOB_STATE_";
  if (n.rfind(kPrefix, 0) == 0) n = n.substr(sizeof(kPrefix) - 1);
  return n;
}

bool IsFinal(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
         s == v1::JOB_STATE_CANCELLED;
}

std::vector<FlagSpec> WithCluster(std::vector<FlagSpec> flags) {
  for (FlagSpec& f : ClusterFlags()) flags.push_back(std::move(f));
  return flags;
}

std::string FormatDuration(double s) {
  if (s < 0 || s > 1e7) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, t / 60 % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

std::string ProgressLine(const v1::Progress& p) {
  constexpr int kWidth = 24;
  const double frac =
      p.total_steps() > 0 ? static_cast<double>(p.step()) / static_cast<double>(p.total_steps()) : 0;
  const int filled = static_cast<int>(frac * kWidth);
  return absl::StrFormat("[%s%s] step %d/%d  loss %.4f  %.0f tok/s  eta %s",
                         std::string(filled, '#'), std::string(kWidth - filled, '-'), p.step(),
                         p.total_steps(), p.loss(), p.tokens_per_s(), FormatDuration(p.eta_s()));
}

// Follows a job's events until it is final, reconnecting (from the last seq seen) while the
// coordinator is unreachable, for up to `reconnect_s` seconds in a row. `on_event` prints.
template <typename OnEvent>
absl::StatusOr<v1::JobState> FollowJob(const ClusterConnection& c, const std::string& job_id,
                                       int reconnect_s, OnEvent&& on_event) {
  auto stub = v1::Jobs::NewStub(c.channel);
  int64_t after = 0;
  auto down_since = std::chrono::steady_clock::now();
  bool down = false;
  v1::JobState last = v1::JOB_STATE_UNSPECIFIED;
  for (;;) {
    grpc::ClientContext ctx;
    c.Prepare(&ctx, 24 * 3600);
    v1::WatchJobRequest req;
    req.set_job_id(job_id);
    req.set_after_seq(after);
    auto reader = stub->WatchJob(&ctx, req);
    v1::JobEvent ev;
    while (reader->Read(&ev)) {
      down = false;
      after = ev.seq();
      if (ev.has_state()) last = ev.state().state();
      on_event(ev);
    }
    const grpc::Status s = reader->Finish();
    if (IsFinal(last)) return last;
    if (s.ok()) return last;  // the stream ended without a final state: report what we know
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE) return rpc::FromGrpc(s);
    if (!down) {
      down = true;
      down_since = std::chrono::steady_clock::now();
      std::fprintf(stderr, "\ncoordinator unreachable (%s); reconnecting...\n",
                   s.error_message().c_str());
    }
    if (std::chrono::steady_clock::now() - down_since > std::chrono::seconds(reconnect_s)) {
      return rpc::FromGrpc(s);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

absl::Status JobResult(const ClusterConnection& c, const std::string& job_id,
                       v1::JobState state) {
  if (state == v1::JOB_STATE_SUCCEEDED) return absl::OkStatus();
  auto stub = v1::Jobs::NewStub(c.channel);
  grpc::ClientContext ctx;
  c.Prepare(&ctx);
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  v1::Job job;
  std::string reason;
  if (stub->GetJob(&ctx, req, &job).ok()) reason = job.reason();
  const std::string msg = absl::StrCat("job ", job_id, " ", StateName(state),
                                       reason.empty() ? "" : ": ", reason);
  return state == v1::JOB_STATE_CANCELLED ? absl::CancelledError(msg) : absl::AbortedError(msg);
}

absl::Status Watch(const ClusterConnection& c, const std::string& job_id) {
  const bool tty = isatty(STDOUT_FILENO) != 0;
  bool line_open = false;
  ANVIL_ASSIGN_OR_RETURN(
      v1::JobState final_state,
      FollowJob(c, job_id, 300, [&](const v1::JobEvent& ev) {
        if (ev.has_progress()) {
          if (tty) {
            std::printf("\r%s", ProgressLine(ev.progress()).c_str());
            line_open = true;
          } else {
            std::printf("%s\n", ProgressLine(ev.progress()).c_str());
          }
        } else if (ev.has_state()) {
          if (line_open) std::printf("\n");
          line_open = false;
          const auto& st = ev.state();
          std::printf("%s %s (attempt %d%s%s)%s%s\n", job_id.c_str(),
                      StateName(st.state()).c_str(), st.attempt(),
                      st.worker_ids().empty() ? "" : ", workers ",
                      absl::StrJoin(st.worker_ids(), ",").c_str(),
                      st.reason().empty() ? "" : ": ", st.reason().c_str());
        }
        std::fflush(stdout);
      }));
  if (line_open) std::printf("\n");
  return JobResult(c, job_id, final_state);
}

Command SubmitCommand() {
  Command c;
  c.spec = {"submit",
            "Submit a fine-tuning recipe as a job to the cluster; prints the job id.",
            {"RECIPE.yaml"},
            WithCluster({{"workers", "N", "1", "workers the job needs together (gang)"},
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
    if (args.GetBool("watch")) return Watch(conn, job.job_id());
    return absl::OkStatus();
  };
  return c;
}

// Made absolute against the current directory: the workers resolve paths on their own.
std::string AbsolutePath(const std::string& p) {
  return std::filesystem::absolute(std::filesystem::path(p)).lexically_normal().string();
}

Command EvalJobCommand() {
  Command c;
  c.spec = {"eval-job",
            "Submit an evaluation job (EvalSpec) to the cluster: the task's records are split "
            "across --workers and the merged result file equals `anvil eval --out`'s; it is "
            "registered with the model in the artifact registry.",
            {"MODEL", "TASK"},
            WithCluster({{"out", "PATH", "", "the result JSON the job writes (required)"},
                         {"workers", "N", "1", "workers sharing the records"},
                         {"limit", "N", "0", "score at most N records (0 = all)"},
                         {"strategy", "S", "", "zero_shot, few_shot or chain_of_thought"},
                         {"threads", "N", "0", "CPU threads per worker (0: the worker's)"},
                         {"retries", "N", "2", "failed attempts retried before the job fails"},
                         {"request-id", "ID", "", "idempotency key"},
                         {"watch", "", "", "then follow it like anvil watch"}})};
  c.run = [](const Args& args) -> absl::Status {
    if (!args.Has("out") || args.Get("out").empty()) {
      return absl::InvalidArgumentError("--out is required");
    }
    v1::SubmitJobRequest req;
    req.set_request_id(args.Get("request-id"));
    v1::JobSpec* spec = req.mutable_spec();
    v1::EvalSpec* ev = spec->mutable_eval();
    ev->set_model(AbsolutePath(args.positional(0)));
    ev->set_model_name(args.positional(0));  // as `anvil eval` records it
    ev->set_task(AbsolutePath(args.positional(1)));
    ev->set_output(AbsolutePath(args.Get("out")));
    ANVIL_ASSIGN_OR_RETURN(int64_t limit, args.GetInt("limit"));
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    ANVIL_ASSIGN_OR_RETURN(int64_t workers, args.GetInt("workers"));
    ANVIL_ASSIGN_OR_RETURN(int64_t retries, args.GetInt("retries"));
    if (limit < 0 || limit > INT32_MAX) return absl::InvalidArgumentError("--limit: out of range");
    ev->set_limit(static_cast<int32_t>(limit));
    if (threads != 0) ev->set_threads(static_cast<int32_t>(std::min<int64_t>(threads, 1 << 20)));
    if (!args.Get("strategy").empty()) ev->set_strategy(args.Get("strategy"));
    spec->set_name(absl::StrCat("eval ", args.positional(1).substr(
                                             args.positional(1).find_last_of('/') + 1)));
    spec->set_min_workers(static_cast<int32_t>(std::clamp<int64_t>(workers, -1, 1 << 20)));
    spec->set_max_retries(static_cast<int32_t>(std::clamp<int64_t>(retries, -1, 1 << 20)));
    ANVIL_RETURN_IF_ERROR(rpc::ValidateJobSpec(*spec));
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    auto stub = v1::Jobs::NewStub(conn.channel);
    grpc::ClientContext ctx;
    conn.Prepare(&ctx);
    v1::Job job;
    ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->SubmitJob(&ctx, req, &job)));
    std::printf("%s\n", job.job_id().c_str());
    std::fflush(stdout);
    if (!args.GetBool("watch")) return absl::OkStatus();
    ANVIL_RETURN_IF_ERROR(Watch(conn, job.job_id()));
    std::printf("result: %s\n", ev->output().c_str());
    return absl::OkStatus();
  };
  return c;
}

Command JobsCommand() {
  Command c;
  c.spec = {"jobs", "List the cluster's jobs, newest first.", {},
            WithCluster({{"all", "", "", "every job (default: the newest 50)"}})};
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
            {"JOB"}, WithCluster({})};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    return Watch(conn, args.positional(0));
  };
  return c;
}

Command LogsCommand() {
  Command c;
  c.spec = {"logs", "Print a job's log lines and state changes, following it until it ends.",
            {"JOB"}, WithCluster({})};
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
                           }));
    (void)st;
    return absl::OkStatus();
  };
  return c;
}

Command CancelCommand() {
  Command c;
  c.spec = {"cancel", "Cancel a job (a running one stops within seconds).", {"JOB"},
            WithCluster({})};
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
  std::vector<Command> all = {SubmitCommand(), EvalJobCommand(), JobsCommand(), WatchCommand(),
                              LogsCommand(),   CancelCommand(),  UpCommand()};
  for (Command& c : ArtifactCommands()) all.push_back(std::move(c));
  return all;
}

}  // namespace anvil::cli
