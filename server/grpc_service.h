// The gRPC Inference service (callback API), a thin adapter over InferenceCore: check the token,
// validate, call the core, fill the reply. Generate/Chat stream through a write reactor woken by
// the engine (grpc_generate.cc); a cancelled call or a passed deadline cancels the engine request.
#ifndef ANVIL_SERVER_GRPC_SERVICE_H_
#define ANVIL_SERVER_GRPC_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "anvil/v1/inference.grpc.pb.h"
#include "rpc/auth.h"
#include "server/server_core.h"

namespace anvil::server {

class InferenceService final : public v1::Inference::CallbackService {
 public:
  InferenceService(InferenceCore* core, const rpc::TokenChecker* auth) : core_(core), auth_(auth) {}

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* ctx, const v1::GenerateRequest* request) override;
  grpc::ServerWriteReactor<v1::GenerateResponse>* Chat(grpc::CallbackServerContext* ctx,
                                                       const v1::ChatRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* ctx,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* ctx,
                                       const v1::DetokenizeRequest* request,
                                       v1::DetokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Embed(grpc::CallbackServerContext* ctx,
                                  const v1::EmbedRequest* request,
                                  v1::EmbedResponse* response) override;
  grpc::ServerUnaryReactor* ModelInfo(grpc::CallbackServerContext* ctx,
                                      const v1::ModelInfoRequest* request,
                                      v1::ModelInfoResponse* response) override;
  grpc::ServerUnaryReactor* LoadAdapter(grpc::CallbackServerContext* ctx,
                                        const v1::LoadAdapterRequest* request,
                                        v1::LoadAdapterResponse* response) override;
  grpc::ServerUnaryReactor* UnloadAdapter(grpc::CallbackServerContext* ctx,
                                          const v1::UnloadAdapterRequest* request,
                                          v1::UnloadAdapterResponse* response) override;

 private:
  // Token, serving state, options -> engine request -> a streaming reactor (or a failed one).
  grpc::ServerWriteReactor<v1::GenerateResponse>* StartGeneration(
      grpc::CallbackServerContext* ctx, const char* method, absl::StatusOr<std::vector<int32_t>> prompt,
      GenerationParams params, bool logprobs);
  // Finishes a unary call with `s`, counting it.
  grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const char* method,
                                 const absl::Status& s);

  InferenceCore* const core_;
  const rpc::TokenChecker* const auth_;
};

// GenerationOptions -> GenerationParams (the proto's unset optionals stay unset);
// InvalidArgument for a negative max_tokens or top_logprobs without logprobs.
absl::StatusOr<GenerationParams> ParamsFromProto(const v1::GenerationOptions& o);

// The streaming reactor for one admitted request (grpc_generate.cc). stop_at_eog: the request
// stops at end-of-generation tokens, so an event carrying one only flushes held-back text.
grpc::ServerWriteReactor<v1::GenerateResponse>* NewGenerateReactor(
    InferenceCore* core, const char* method, std::shared_ptr<Stream> stream, bool logprobs,
    bool stop_at_eog, absl::Time submitted);

}  // namespace anvil::server

#endif  // ANVIL_SERVER_GRPC_SERVICE_H_
