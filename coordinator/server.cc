#include "coordinator/server.h"

#include <grpcpp/health_check_service_interface.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"

namespace anvil::coordinator {

CoordinatorServer::CoordinatorServer(const CoordinatorOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorOptions& options) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("--db: a path is required");
  if (options.heartbeat_interval_ms <= 0 || options.dead_after_ms <= 0) {
    return absl::InvalidArgumentError("heartbeat interval and dead-after must be positive");
  }
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer(options));
  ANVIL_ASSIGN_OR_RETURN(s->store_, Store::Open(options.db_path));
  ArtifactStoreOptions artifacts;
  artifacts.db_path = options.db_path;
  artifacts.blob_dir = options.blob_dir.empty() ? options.db_path + ".blobs" : options.blob_dir;
  artifacts.max_size_bytes = options.max_artifact_bytes;
  ANVIL_ASSIGN_OR_RETURN(s->artifact_store_, ArtifactStore::Open(artifacts));
  s->hub_ = std::make_unique<WaitHub>();
  SchedulerOptions sched;
  sched.heartbeat_interval_ms = options.heartbeat_interval_ms;
  sched.dead_after_ms = options.dead_after_ms;
  WaitHub* hub = s->hub_.get();
  sched.notify = [hub](const std::string& key) { hub->Notify(key); };
  ANVIL_ASSIGN_OR_RETURN(s->scheduler_, Scheduler::Create(s->store_.get(), std::move(sched)));
  s->auth_ = std::make_unique<rpc::TokenChecker>(options.token);
  const ServiceDeps deps{s->store_.get(), s->scheduler_.get(), hub, s->auth_.get(),
                         s->artifact_store_.get()};
  s->jobs_ = std::make_unique<JobsService>(deps);
  s->workers_ = std::make_unique<WorkersService>(deps);
  s->rendezvous_ = std::make_unique<RendezvousService>(deps);
  s->artifacts_ = std::make_unique<ArtifactsService>(deps);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  // Keepalive: find dead client connections (a worker whose host vanished) within a minute, and
  // accept the pings of clients that keep their own long-lived channels alive.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  builder.RegisterService(s->jobs_.get());
  builder.RegisterService(s->workers_.get());
  builder.RegisterService(s->rendezvous_.get());
  builder.RegisterService(s->artifacts_.get());
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || port == 0) {
    s->hub_->Shutdown();
    return absl::FailedPreconditionError(
        absl::StrCat("cannot listen on ", options.listen, " (address in use or invalid?)"));
  }
  s->port_ = port;
  const size_t colon = options.listen.rfind(':');
  s->address_ = absl::StrCat(options.listen.substr(0, colon), ":", port);
  s->heartbeat_thread_ = std::thread([p = s.get()] { p->HeartbeatLoop(); });
  return s;
}

CoordinatorServer::~CoordinatorServer() { Shutdown(); }

void CoordinatorServer::HeartbeatLoop() {
  const absl::Duration every = absl::Milliseconds(options_.heartbeat_interval_ms);
  while (!stop_.WaitForNotificationWithTimeout(every)) {
    absl::Status s = scheduler_->CheckWorkers();
    if (!s.ok()) std::fprintf(stderr, "anvil-coordinator: checking workers: %s\n",
                              s.ToString().c_str());
  }
}

void CoordinatorServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  // Waiting calls first: Server::Shutdown waits for every call to finish, and a long poll would
  // otherwise hold it until its own deadline.
  if (hub_) hub_->Shutdown();
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
}

}  // namespace anvil::coordinator
