// anvil.v1.Workers: register, heartbeat, long-polled tasks, progress, completion. PollTask waits
// on the WaitHub key "worker/<id>", which the scheduler notifies when it assigns a task.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/services.h"

namespace anvil::coordinator {
namespace {

constexpr int64_t kMaxPollWaitMs = 30000;
constexpr size_t kMaxNameBytes = 256;

absl::Status RequireWorkerId(const std::string& worker_id) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id: must not be empty");
  return absl::OkStatus();
}

}  // namespace

grpc::ServerUnaryReactor* WorkersService::Register(grpc::CallbackServerContext* ctx,
                                                   const v1::RegisterRequest* request,
                                                   v1::RegisterResponse* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok() && request->name().size() > kMaxNameBytes) {
    s = absl::InvalidArgumentError(absl::StrCat("name: longer than ", kMaxNameBytes, " bytes"));
  }
  if (s.ok()) {
    std::vector<v1::Device> devices(request->devices().begin(), request->devices().end());
    absl::StatusOr<v1::RegisterResponse> r =
        deps_.scheduler->RegisterWorker(request->name(), devices);
    if (r.ok()) *response = std::move(*r);
    s = r.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* WorkersService::Heartbeat(grpc::CallbackServerContext* ctx,
                                                    const v1::HeartbeatRequest* request,
                                                    v1::HeartbeatResponse* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) s = RequireWorkerId(request->worker_id());
  if (s.ok()) {
    absl::StatusOr<v1::HeartbeatResponse> r =
        deps_.scheduler->Heartbeat(request->worker_id(), request->task_id());
    if (r.ok()) *response = std::move(*r);
    s = r.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* WorkersService::PollTask(grpc::CallbackServerContext* ctx,
                                                   const v1::PollTaskRequest* request,
                                                   v1::PollTaskResponse* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) s = RequireWorkerId(request->worker_id());
  if (!s.ok()) return FinishNow(ctx, s);
  const int64_t wait_ms = std::clamp<int64_t>(request->wait_ms(), 0, kMaxPollWaitMs);
  Scheduler* scheduler = deps_.scheduler;
  const std::string worker_id = request->worker_id();
  auto* reactor = new LongPollReactor(
      deps_.hub, "worker/" + worker_id, absl::Now() + absl::Milliseconds(wait_ms),
      [scheduler, worker_id, response]() -> absl::StatusOr<bool> {
        absl::StatusOr<std::optional<v1::Task>> task = scheduler->TakeTask(worker_id);
        if (!task.ok()) return task.status();
        if (!task->has_value()) return false;
        *response->mutable_task() = std::move(**task);
        return true;
      },
      absl::OkStatus());  // nothing assigned within wait_ms: an empty response
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* WorkersService::ReportProgress(grpc::CallbackServerContext* ctx,
                                                         const v1::ReportProgressRequest* request,
                                                         v1::ReportProgressResponse* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) s = RequireWorkerId(request->worker_id());
  if (s.ok()) {
    absl::StatusOr<bool> stop = deps_.scheduler->ReportProgress(*request);
    if (stop.ok()) response->set_stop_task(*stop);
    s = stop.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* WorkersService::CompleteTask(grpc::CallbackServerContext* ctx,
                                                       const v1::CompleteTaskRequest* request,
                                                       v1::CompleteTaskResponse* /*response*/) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) s = RequireWorkerId(request->worker_id());
  if (s.ok()) s = deps_.scheduler->CompleteTask(*request);
  return FinishNow(ctx, s);
}

}  // namespace anvil::coordinator
