#include "server/server_app.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "rpc/auth.h"
#include "rpc/channel.h"
#include "server/grpc_service.h"
#include "server/http_server.h"

namespace anvil::server {
namespace {

constexpr char kServiceName[] = "anvil.v1.Inference";

}  // namespace

absl::StatusOr<std::unique_ptr<ServerApp>> ServerApp::Start(ServerOptions options) {
  if (options.model_path.empty()) return absl::InvalidArgumentError("no model path given");
  std::unique_ptr<ServerApp> app(new ServerApp());
  app->core_ = std::make_unique<InferenceCore>(options);
  app->auth_ = std::make_unique<rpc::TokenChecker>(options.token);
  app->service_ = std::make_unique<InferenceService>(app->core_.get(), app->auth_.get());

  if (options.grpc_port >= 0) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat(options.host, ":", options.grpc_port),
                             grpc::InsecureServerCredentials(), &app->grpc_port_);
    builder.SetMaxReceiveMessageSize(rpc::kMaxMessageBytes);
    builder.RegisterService(app->service_.get());
    app->grpc_ = builder.BuildAndStart();
    if (app->grpc_ == nullptr || app->grpc_port_ <= 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "gRPC: cannot listen on ", options.host, ":", options.grpc_port, " (address in use?)"));
    }
    app->SetHealth(false);  // loading
  }
  if (options.http_port >= 0) {
    absl::StatusOr<std::unique_ptr<HttpServer>> http = HttpServer::Start(app->core_.get());
    if (!http.ok()) return http.status();
    app->http_ = *std::move(http);
    app->http_port_ = app->http_->port();
  }
  ServerApp* a = app.get();
  app->loader_ = std::thread([a] {
    a->load_status_ = a->core_->Load();
    if (a->load_status_.ok()) a->SetHealth(true);
    a->loaded_.Notify();
  });
  return app;
}

ServerApp::~ServerApp() { Shutdown(absl::ZeroDuration()); }

void ServerApp::SetHealth(bool serving) {
  if (grpc_ == nullptr) return;
  grpc::HealthCheckServiceInterface* h = grpc_->GetHealthCheckService();
  if (h == nullptr) return;
  h->SetServingStatus(kServiceName, serving);
  h->SetServingStatus(serving);
}

absl::Status ServerApp::WaitLoaded() {
  loaded_.WaitForNotification();
  return load_status_;
}

bool ServerApp::Shutdown(absl::Duration timeout) {
  if (shut_down_) return true;
  shut_down_ = true;
  if (loader_.joinable()) loader_.join();
  // Refuse new work first (health, then admission), then let the admitted finish.
  if (grpc_ != nullptr && grpc_->GetHealthCheckService() != nullptr) {
    grpc_->GetHealthCheckService()->Shutdown();  // NOT_SERVING for good
  }
  core_->Drain();
  const bool idle = core_->WaitIdle(timeout);
  if (!idle) {
    core_->CancelAll();  // past the timeout: cut what is still running
    core_->WaitIdle(absl::Seconds(5));
  }
  // The streams are complete once the engine is idle; a short grace lets their last messages
  // reach the clients before the servers stop (past it, gRPC cancels what remains).
  if (grpc_ != nullptr) {
    grpc_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  if (http_ != nullptr) http_->Stop();
  return idle;
}

}  // namespace anvil::server
