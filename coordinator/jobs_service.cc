// anvil.v1.Jobs: submit, get, list, cancel, watch. WatchJob replays stored events from the
// Store and then follows new ones through the WaitHub ("job/<id>"), one write in flight at a
// time, and ends after the event that makes the job final.
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/services.h"
#include "rpc/job_spec.h"
#include "rpc/status.h"

namespace anvil::coordinator {
namespace {

constexpr size_t kMaxRequestIdBytes = 128;
constexpr int kEventsPerRead = 64;
// A watch with nothing to send looks again this often even without a notification.
constexpr absl::Duration kWatchRecheck = absl::Seconds(30);

bool IsFinalEvent(const v1::JobEvent& e) { return e.has_state() && JobIsFinal(e.state().state()); }

class WatchReactor : public grpc::ServerWriteReactor<v1::JobEvent> {
 public:
  WatchReactor(ServiceDeps deps, std::string job_id, int64_t after_seq)
      : deps_(deps), job_id_(std::move(job_id)), last_seq_(after_seq) {}

  void Start() { Advance(); }

  void OnWriteDone(bool ok) override {
    if (!ok) return FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    if (final_sent_) return FinishOnce(grpc::Status::OK);
    Advance();
  }

  void OnCancel() override {
    uint64_t id;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      id = waiter_id_;
    }
    if (id != 0 && deps_.hub->Remove(id)) {
      FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
    }
  }

  void OnDone() override { Unref(); }

 private:
  void Ref() {
    absl::MutexLock lock(&mu_);
    ++refs_;
  }
  void Unref() {
    bool last;
    {
      absl::MutexLock lock(&mu_);
      last = --refs_ == 0;
    }
    if (last) delete this;
  }

  // Runs with no write in flight and no waiter registered, on one thread at a time.
  void Advance() {
    Ref();
    AdvancePinned();
    Unref();
  }

  void AdvancePinned() {
    if (!buffer_.empty()) return WriteNext();
    // The job's state is read before the events: a job final here has its final event stored,
    // so an empty read below means the stream is complete.
    absl::StatusOr<v1::Job> job = deps_.scheduler->GetJob(job_id_);
    if (!job.ok()) return FinishOnce(rpc::ToGrpc(job.status()));
    const bool was_final = JobIsFinal(job->state());
    // Register before reading, so an event stored after the read still wakes us.
    const uint64_t id = was_final ? 0
                                  : deps_.hub->Add("job/" + job_id_, absl::Now() + kWatchRecheck,
                                                   [this](WakeReason r) { OnWake(r); });
    absl::StatusOr<std::vector<v1::JobEvent>> events =
        deps_.store->ReadEvents(job_id_, last_seq_, kEventsPerRead);
    const bool done = !events.ok() || !events->empty() || was_final;
    if (!done) {
      absl::MutexLock lock(&mu_);
      waiter_id_ = id;
      return;
    }
    // When Remove fails the callback owns the stream now and calls Advance itself.
    if (id != 0 && !deps_.hub->Remove(id)) return;
    if (!events.ok()) return FinishOnce(rpc::ToGrpc(events.status()));
    if (events->empty()) return FinishOnce(grpc::Status::OK);
    buffer_.assign(events->begin(), events->end());
    WriteNext();
  }

  void WriteNext() {
    current_ = std::move(buffer_.front());
    buffer_.pop_front();
    last_seq_ = current_.seq();
    final_sent_ = IsFinalEvent(current_);
    StartWrite(&current_);
  }

  void OnWake(WakeReason reason) {
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      waiter_id_ = 0;
      cancelled = cancelled_;
    }
    if (cancelled) return FinishOnce(grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled"));
    if (reason == WakeReason::kShutdown) {
      return FinishOnce(
          grpc::Status(grpc::StatusCode::UNAVAILABLE, "the coordinator is shutting down"));
    }
    Advance();
  }

  void FinishOnce(const grpc::Status& status) {
    {
      absl::MutexLock lock(&mu_);
      if (finished_) return;
      finished_ = true;
    }
    Finish(status);
  }

  const ServiceDeps deps_;
  const std::string job_id_;
  // Touched only by the one thread that runs Advance / OnWriteDone at a time.
  int64_t last_seq_;
  std::deque<v1::JobEvent> buffer_;
  v1::JobEvent current_;
  bool final_sent_ = false;
  absl::Mutex mu_;  // never held across Finish, StartWrite or WaitHub calls
  uint64_t waiter_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int refs_ ABSL_GUARDED_BY(mu_) = 1;  // gRPC's, until OnDone
};

}  // namespace

grpc::ServerUnaryReactor* JobsService::SubmitJob(grpc::CallbackServerContext* ctx,
                                                 const v1::SubmitJobRequest* request,
                                                 v1::Job* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok() && request->request_id().size() > kMaxRequestIdBytes) {
    s = absl::InvalidArgumentError(absl::StrCat("request_id: longer than ", kMaxRequestIdBytes,
                                                " bytes (", request->request_id().size(), ")"));
  }
  if (s.ok()) s = rpc::ValidateJobSpec(request->spec());
  if (s.ok()) {
    absl::StatusOr<v1::Job> job =
        deps_.scheduler->SubmitJob(request->request_id(), request->spec());
    if (job.ok()) *response = std::move(*job);
    s = job.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* JobsService::GetJob(grpc::CallbackServerContext* ctx,
                                              const v1::GetJobRequest* request,
                                              v1::Job* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) {
    absl::StatusOr<v1::Job> job = deps_.scheduler->GetJob(request->job_id());
    if (job.ok()) *response = std::move(*job);
    s = job.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* JobsService::ListJobs(grpc::CallbackServerContext* ctx,
                                                const v1::ListJobsRequest* request,
                                                v1::ListJobsResponse* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok() && request->page_size() < 0) {
    s = absl::InvalidArgumentError(
        absl::StrCat("page_size: must not be negative, got ", request->page_size()));
  }
  if (s.ok()) {
    std::vector<v1::JobState> states;
    for (int st : request->states()) states.push_back(static_cast<v1::JobState>(st));
    absl::StatusOr<JobPage> page =
        deps_.scheduler->ListJobs(states, request->page_size(), request->page_token());
    if (page.ok()) {
      for (v1::Job& j : page->jobs) *response->add_jobs() = std::move(j);
      response->set_next_page_token(page->next_page_token);
    }
    s = page.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* JobsService::CancelJob(grpc::CallbackServerContext* ctx,
                                                 const v1::CancelJobRequest* request,
                                                 v1::Job* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) {
    absl::StatusOr<v1::Job> job = deps_.scheduler->CancelJob(request->job_id());
    if (job.ok()) *response = std::move(*job);
    s = job.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerWriteReactor<v1::JobEvent>* JobsService::WatchJob(grpc::CallbackServerContext* ctx,
                                                              const v1::WatchJobRequest* request) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok() && request->after_seq() < 0) {
    s = absl::InvalidArgumentError("after_seq: must not be negative");
  }
  if (s.ok()) s = deps_.scheduler->GetJob(request->job_id()).status();
  if (!s.ok()) {
    // A reactor that only finishes: the stream ends with the error and no events.
    class Failed : public grpc::ServerWriteReactor<v1::JobEvent> {
     public:
      explicit Failed(const absl::Status& s) { Finish(rpc::ToGrpc(s)); }
      void OnDone() override { delete this; }
    };
    return new Failed(s);
  }
  auto* reactor = new WatchReactor(deps_, request->job_id(), request->after_seq());
  reactor->Start();
  return reactor;
}

}  // namespace anvil::coordinator
