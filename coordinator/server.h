// The coordinator process minus flag parsing: opens the Store, builds the Scheduler, serves the
// Jobs, Workers, Rendezvous and Artifacts services (plus grpc.health.v1) and runs the thread that declares
// silent workers dead. main.cc and the in-process tests both start it through Start().
#ifndef ANVIL_COORDINATOR_SERVER_H_
#define ANVIL_COORDINATOR_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "coordinator/artifact_store.h"
#include "coordinator/scheduler.h"
#include "coordinator/services.h"
#include "coordinator/store.h"
#include "coordinator/wait_hub.h"
#include "rpc/auth.h"

namespace anvil::coordinator {

inline constexpr int kMaxReceiveMessageBytes = 16 << 20;

struct CoordinatorOptions {
  std::string listen = "127.0.0.1:7070";  // port 0: a free port (see CoordinatorServer::port)
  std::string db_path;                    // SQLite file, created when missing
  std::string blob_dir;                   // artifact blobs; empty: <db_path>.blobs
  int64_t max_artifact_bytes = kDefaultMaxArtifactBytes;
  std::string token;                      // empty: no authentication (tests, --insecure-no-token)
  int64_t heartbeat_interval_ms = 1000;
  int64_t dead_after_ms = 5000;
};

class CoordinatorServer {
 public:
  // FailedPrecondition when the database cannot be opened or the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const CoordinatorOptions& options);
  ~CoordinatorServer();  // Shutdown()

  int port() const { return port_; }
  // "host:port" with the port actually bound.
  const std::string& address() const { return address_; }
  Scheduler* scheduler() { return scheduler_.get(); }

  // Ends long polls and watches (UNAVAILABLE), stops the server (in-flight calls get a second
  // to finish) and the heartbeat thread. Idempotent.
  void Shutdown();

 private:
  explicit CoordinatorServer(const CoordinatorOptions& options);
  void HeartbeatLoop();

  CoordinatorOptions options_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ArtifactStore> artifact_store_;
  std::unique_ptr<WaitHub> hub_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<rpc::TokenChecker> auth_;
  std::unique_ptr<JobsService> jobs_;
  std::unique_ptr<WorkersService> workers_;
  std::unique_ptr<RendezvousService> rendezvous_;
  std::unique_ptr<ArtifactsService> artifacts_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string address_;
  absl::Notification stop_;
  std::thread heartbeat_thread_;
  bool shut_down_ = false;
};

}  // namespace anvil::coordinator

#endif  // ANVIL_COORDINATOR_SERVER_H_
