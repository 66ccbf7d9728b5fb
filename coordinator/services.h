// The coordinator's gRPC services (callback API), thin adapters: check the bearer token,
// validate the request, call the Scheduler / Store / ArtifactStore, fill the reply. Long calls
// (PollTask, WatchJob, Rendezvous Get/Wait) wait on the WaitHub instead of parking a gRPC thread.
#ifndef ANVIL_COORDINATOR_SERVICES_H_
#define ANVIL_COORDINATOR_SERVICES_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "anvil/v1/artifacts.grpc.pb.h"
#include "anvil/v1/jobs.grpc.pb.h"
#include "anvil/v1/rendezvous.grpc.pb.h"
#include "anvil/v1/workers.grpc.pb.h"
#include "coordinator/artifact_store.h"
#include "coordinator/scheduler.h"
#include "coordinator/store.h"
#include "coordinator/wait_hub.h"
#include "rpc/auth.h"

namespace anvil::coordinator {

// What every service needs; all owned by the CoordinatorServer, which outlives the services.
struct ServiceDeps {
  Store* store = nullptr;
  Scheduler* scheduler = nullptr;
  WaitHub* hub = nullptr;
  const rpc::TokenChecker* auth = nullptr;
  ArtifactStore* artifacts = nullptr;
};

class JobsService final : public v1::Jobs::CallbackService {
 public:
  explicit JobsService(ServiceDeps deps) : deps_(deps) {}
  grpc::ServerUnaryReactor* SubmitJob(grpc::CallbackServerContext* ctx,
                                      const v1::SubmitJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerUnaryReactor* GetJob(grpc::CallbackServerContext* ctx,
                                   const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::ServerUnaryReactor* ListJobs(grpc::CallbackServerContext* ctx,
                                     const v1::ListJobsRequest* request,
                                     v1::ListJobsResponse* response) override;
  grpc::ServerUnaryReactor* CancelJob(grpc::CallbackServerContext* ctx,
                                      const v1::CancelJobRequest* request,
                                      v1::Job* response) override;
  grpc::ServerWriteReactor<v1::JobEvent>* WatchJob(grpc::CallbackServerContext* ctx,
                                                   const v1::WatchJobRequest* request) override;

 private:
  ServiceDeps deps_;
};

class WorkersService final : public v1::Workers::CallbackService {
 public:
  explicit WorkersService(ServiceDeps deps) : deps_(deps) {}
  grpc::ServerUnaryReactor* Register(grpc::CallbackServerContext* ctx,
                                     const v1::RegisterRequest* request,
                                     v1::RegisterResponse* response) override;
  grpc::ServerUnaryReactor* Heartbeat(grpc::CallbackServerContext* ctx,
                                      const v1::HeartbeatRequest* request,
                                      v1::HeartbeatResponse* response) override;
  grpc::ServerUnaryReactor* PollTask(grpc::CallbackServerContext* ctx,
                                     const v1::PollTaskRequest* request,
                                     v1::PollTaskResponse* response) override;
  grpc::ServerUnaryReactor* ReportProgress(grpc::CallbackServerContext* ctx,
                                           const v1::ReportProgressRequest* request,
                                           v1::ReportProgressResponse* response) override;
  grpc::ServerUnaryReactor* CompleteTask(grpc::CallbackServerContext* ctx,
                                         const v1::CompleteTaskRequest* request,
                                         v1::CompleteTaskResponse* response) override;

 private:
  ServiceDeps deps_;
};

class RendezvousService final : public v1::Rendezvous::CallbackService {
 public:
  explicit RendezvousService(ServiceDeps deps) : deps_(deps) {}
  grpc::ServerUnaryReactor* Set(grpc::CallbackServerContext* ctx, const v1::SetRequest* request,
                                v1::SetResponse* response) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx, const v1::GetRequest* request,
                                v1::GetResponse* response) override;
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* ctx,
                                 const v1::WaitRequest* request,
                                 v1::WaitResponse* response) override;

 private:
  ServiceDeps deps_;
};

// anvil.v1.Artifacts (artifacts_service.cc): uploads and downloads stream through reactors that
// hold no lock; blob files and rows are the ArtifactStore's.
class ArtifactsService final : public v1::Artifacts::CallbackService {
 public:
  explicit ArtifactsService(ServiceDeps deps) : deps_(deps) {}
  grpc::ServerReadReactor<v1::UploadRequest>* Upload(grpc::CallbackServerContext* ctx,
                                                     v1::Artifact* response) override;
  grpc::ServerWriteReactor<v1::DownloadChunk>* Download(
      grpc::CallbackServerContext* ctx, const v1::DownloadRequest* request) override;
  grpc::ServerUnaryReactor* GetArtifact(grpc::CallbackServerContext* ctx,
                                        const v1::GetArtifactRequest* request,
                                        v1::Artifact* response) override;
  grpc::ServerUnaryReactor* ListArtifacts(grpc::CallbackServerContext* ctx,
                                          const v1::ListArtifactsRequest* request,
                                          v1::ListArtifactsResponse* response) override;

 private:
  ServiceDeps deps_;
};

// Finishes a unary call at once with `status` (the default reactor).
grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* ctx, const absl::Status& status);

// A unary call that waits on a WaitHub key. `attempt` fills the response and returns true when
// the call is done (false: wait for the key); it runs serialized, possibly more than once.
// At the deadline the call finishes with `on_timeout`; client cancellation finishes it with
// CANCELLED and server shutdown with UNAVAILABLE.
class LongPollReactor : public grpc::ServerUnaryReactor {
 public:
  using Attempt = std::function<absl::StatusOr<bool>()>;
  LongPollReactor(WaitHub* hub, std::string key, absl::Time deadline, Attempt attempt,
                  absl::Status on_timeout)
      : hub_(hub),
        key_(std::move(key)),
        deadline_(deadline),
        attempt_(std::move(attempt)),
        on_timeout_(std::move(on_timeout)) {}
  void Start() { Step(false); }

  void OnCancel() override;
  void OnDone() override { Unref(); }

 private:
  // A Step running on one thread while the WaitHub's callback finishes the call on another must
  // not see the reactor deleted under it: gRPC's OnDone and each Step hold a reference.
  void Ref();
  void Unref();
  void Step(bool timed_out);  // holds a reference around StepPinned
  void StepPinned(bool timed_out);
  void OnWake(WakeReason reason);
  absl::StatusOr<bool> TryOnce();
  void FinishOnce(const absl::Status& status);

  WaitHub* const hub_;
  const std::string key_;
  const absl::Time deadline_;
  const Attempt attempt_;
  const absl::Status on_timeout_;
  absl::Mutex attempt_mu_;  // attempts write the response: one at a time
  absl::Mutex mu_;          // never held across Finish or WaitHub calls
  uint64_t waiter_id_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int refs_ ABSL_GUARDED_BY(mu_) = 1;  // gRPC's, until OnDone
};

}  // namespace anvil::coordinator

#endif  // ANVIL_COORDINATOR_SERVICES_H_
