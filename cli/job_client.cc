// The Jobs-service client pieces the cluster commands share (see job_client.h).
#include "cli/job_client.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "anvil/v1/jobs.grpc.pb.h"
#include "kernels/core/status_macros.h"
#include "rpc/status.h"

namespace anvil::cli {
namespace {

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

}  // namespace

std::vector<FlagSpec> WithClusterFlags(std::vector<FlagSpec> flags) {
  for (FlagSpec& f : ClusterFlags()) flags.push_back(std::move(f));
  return flags;
}

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

absl::StatusOr<v1::JobState> FollowJob(const ClusterConnection& c, const std::string& job_id,
                                       int reconnect_s,
                                       const std::function<bool(const v1::JobEvent&)>& on_event) {
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
      if (!on_event(ev)) {
        ctx.TryCancel();
        (void)reader->Finish();
        return last;
      }
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

absl::Status WatchJob(const ClusterConnection& c, const std::string& job_id) {
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
        return true;
      }));
  if (line_open) std::printf("\n");
  return JobResult(c, job_id, final_state);
}

absl::StatusOr<v1::Job> SubmitJob(const ClusterConnection& c, const v1::SubmitJobRequest& req) {
  auto stub = v1::Jobs::NewStub(c.channel);
  grpc::ClientContext ctx;
  c.Prepare(&ctx);
  v1::Job job;
  ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->SubmitJob(&ctx, req, &job)));
  return job;
}

}  // namespace anvil::cli
