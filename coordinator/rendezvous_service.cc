// anvil.v1.Rendezvous: the key-value store the ranks of an attempt meet through (Gloo's
// rendezvous, the NCCL unique id). Keys are durable in the Store; Get and Wait wait on the
// WaitHub key "rdv/<namespace>", which Set notifies.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "coordinator/services.h"

namespace anvil::coordinator {
namespace {

constexpr size_t kMaxValueBytes = 1 << 20;
constexpr int64_t kMaxTimeoutMs = 600000;

absl::Status CheckName(const std::string& value, absl::string_view field) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  return absl::OkStatus();
}

absl::Status CheckTimeout(int64_t timeout_ms) {
  if (timeout_ms < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("timeout_ms: must not be negative, got ", timeout_ms));
  }
  return absl::OkStatus();
}

absl::Time Deadline(int64_t timeout_ms) {
  return absl::Now() + absl::Milliseconds(std::min(timeout_ms, kMaxTimeoutMs));
}

}  // namespace

grpc::ServerUnaryReactor* RendezvousService::Set(grpc::CallbackServerContext* ctx,
                                                 const v1::SetRequest* request,
                                                 v1::SetResponse* /*response*/) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) s = CheckName(request->namespace_(), "namespace");
  if (s.ok()) s = CheckName(request->key(), "key");
  if (s.ok() && request->value().size() > kMaxValueBytes) {
    s = absl::InvalidArgumentError(absl::StrCat("value: ", request->value().size(),
                                                " bytes, more than the limit of ",
                                                kMaxValueBytes));
  }
  if (s.ok()) s = deps_.store->SetKey(request->namespace_(), request->key(), request->value());
  if (s.ok()) deps_.hub->Notify("rdv/" + request->namespace_());
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* RendezvousService::Get(grpc::CallbackServerContext* ctx,
                                                 const v1::GetRequest* request,
                                                 v1::GetResponse* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) s = CheckName(request->namespace_(), "namespace");
  if (s.ok()) s = CheckName(request->key(), "key");
  if (s.ok()) s = CheckTimeout(request->timeout_ms());
  if (!s.ok()) return FinishNow(ctx, s);
  Store* store = deps_.store;
  const std::string ns = request->namespace_(), key = request->key();
  auto* reactor = new LongPollReactor(
      deps_.hub, "rdv/" + ns, Deadline(request->timeout_ms()),
      [store, ns, key, response]() -> absl::StatusOr<bool> {
        absl::StatusOr<std::optional<std::string>> value = store->GetKey(ns, key);
        if (!value.ok()) return value.status();
        if (!value->has_value()) return false;
        response->set_value(std::move(**value));
        return true;
      },
      absl::DeadlineExceededError(
          absl::StrCat("rendezvous key ", ns, "/", key, " not set within ",
                       std::min(request->timeout_ms(), kMaxTimeoutMs), " ms")));
  reactor->Start();
  return reactor;
}

grpc::ServerUnaryReactor* RendezvousService::Wait(grpc::CallbackServerContext* ctx,
                                                  const v1::WaitRequest* request,
                                                  v1::WaitResponse* /*response*/) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) s = CheckName(request->namespace_(), "namespace");
  for (int i = 0; s.ok() && i < request->keys_size(); ++i) {
    s = CheckName(request->keys(i), absl::StrCat("keys[", i, "]"));
  }
  if (s.ok()) s = CheckTimeout(request->timeout_ms());
  if (!s.ok()) return FinishNow(ctx, s);
  Store* store = deps_.store;
  const std::string ns = request->namespace_();
  std::vector<std::string> keys(request->keys().begin(), request->keys().end());
  auto* reactor = new LongPollReactor(
      deps_.hub, "rdv/" + ns, Deadline(request->timeout_ms()),
      [store, ns, keys]() -> absl::StatusOr<bool> {
        for (const std::string& key : keys) {
          absl::StatusOr<std::optional<std::string>> value = store->GetKey(ns, key);
          if (!value.ok()) return value.status();
          if (!value->has_value()) return false;
        }
        return true;
      },
      absl::DeadlineExceededError(absl::StrCat(
          "rendezvous keys in ", ns, " not all set within ",
          std::min(request->timeout_ms(), kMaxTimeoutMs), " ms")));
  reactor->Start();
  return reactor;
}

}  // namespace anvil::coordinator
