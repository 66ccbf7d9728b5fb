// RendezvousStore: one Rendezvous RPC per Store call, each with a deadline a little past the
// server-side wait, so a coordinator that is gone fails the call instead of hanging it.
#include "worker/rendezvous_store.h"

#include <gloo/common/error.h>
#include <grpcpp/client_context.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rpc/auth.h"

namespace anvil::worker {
namespace {

// The server waits up to timeout_ms; the call itself may take this much longer.
constexpr std::chrono::milliseconds kSlack{5000};
constexpr std::chrono::milliseconds kSetDeadline{10000};

[[noreturn]] void Throw(const std::string& what, const grpc::Status& s) {
  // "timeout" in the message marks a key that never appeared (see the header).
  const bool timeout = s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
  throw gloo::IoException(absl::StrCat("rendezvous ", what, ": ",
                                       timeout ? "timeout: " : "", s.error_message(),
                                       " (grpc code ", static_cast<int>(s.error_code()), ")"));
}

}  // namespace

RendezvousStore::RendezvousStore(std::shared_ptr<grpc::Channel> channel, std::string token,
                                 std::string ns, std::chrono::milliseconds timeout)
    : stub_(v1::Rendezvous::NewStub(channel)),
      token_(std::move(token)),
      namespace_(std::move(ns)),
      timeout_(timeout) {}

void RendezvousStore::set(const std::string& key, const std::vector<char>& data) {
  grpc::ClientContext context;
  rpc::PrepareContext(&context, token_, kSetDeadline);
  v1::SetRequest request;
  request.set_namespace_(namespace_);
  request.set_key(key);
  request.set_value(std::string(data.begin(), data.end()));
  v1::SetResponse response;
  const grpc::Status s = stub_->Set(&context, request, &response);
  if (!s.ok()) Throw(absl::StrCat("set ", namespace_, "/", key), s);
}

std::vector<char> RendezvousStore::get(const std::string& key) {
  grpc::ClientContext context;
  rpc::PrepareContext(&context, token_, timeout_ + kSlack);
  v1::GetRequest request;
  request.set_namespace_(namespace_);
  request.set_key(key);
  request.set_timeout_ms(timeout_.count());
  v1::GetResponse response;
  const grpc::Status s = stub_->Get(&context, request, &response);
  if (!s.ok()) Throw(absl::StrCat("get ", namespace_, "/", key), s);
  return std::vector<char>(response.value().begin(), response.value().end());
}

void RendezvousStore::wait(const std::vector<std::string>& keys,
                           const std::chrono::milliseconds& timeout) {
  const std::chrono::milliseconds t = timeout.count() > 0 ? timeout : timeout_;
  grpc::ClientContext context;
  rpc::PrepareContext(&context, token_, t + kSlack);
  v1::WaitRequest request;
  request.set_namespace_(namespace_);
  for (const std::string& k : keys) request.add_keys(k);
  request.set_timeout_ms(t.count());
  v1::WaitResponse response;
  const grpc::Status s = stub_->Wait(&context, request, &response);
  if (!s.ok()) Throw(absl::StrCat("wait ", namespace_, "/{", absl::StrJoin(keys, ","), "}"), s);
}

}  // namespace anvil::worker
