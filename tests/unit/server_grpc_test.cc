// The gRPC Inference service of a real anvil-server process (real SmolLM2 Q4_1 model, loopback,
// bearer token): greedy Generate/Chat equal `anvil generate`, tokens stream in several messages,
// Tokenize/Detokenize/Embed/ModelInfo, grpc.health.v1 and reflection, the token on every
// method, INVALID_ARGUMENT / NOT_FOUND for bad requests, and deadlines.
#include <grpcpp/generic/generic_stub.h>

#include <cmath>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/llama_model.h"
#include "tests/testing/server_harness.h"

namespace anvil::testing {
namespace {

struct Streamed {
  grpc::Status status;
  std::vector<v1::GenerateResponse> messages;
  std::string text;
  int tokens = 0;
};

class ServerGrpcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = ServerProcess::Start(MakeTempDir("server_grpc"), /*with_token=*/true);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
    auto m = LlamaModel::Load(Q41ModelPath());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    delete model_;
  }

  template <typename Req>
  static Streamed Collect(
      std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> (v1::Inference::Stub::*call)(
          grpc::ClientContext*, const Req&),
      const Req& req, const std::string& token) {
    auto stub = server_->Grpc();
    grpc::ClientContext ctx;
    rpc::PrepareContext(&ctx, token, std::chrono::seconds(120));
    auto reader = ((*stub).*call)(&ctx, req);
    Streamed out;
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      out.text += msg.text();
      out.tokens += msg.tokens_size();
      out.messages.push_back(msg);
    }
    out.status = reader->Finish();
    return out;
  }
  static Streamed Generate(const v1::GenerateRequest& req) {
    return Collect(&v1::Inference::Stub::Generate, req, server_->token);
  }
  static Streamed Chat(const v1::ChatRequest& req) {
    return Collect(&v1::Inference::Stub::Chat, req, server_->token);
  }

  static ServerProcess* server_;
  static LlamaModel* model_;
};
ServerProcess* ServerGrpcTest::server_ = nullptr;
LlamaModel* ServerGrpcTest::model_ = nullptr;

v1::GenerateRequest Greedy(const std::string& prompt, int max_tokens) {
  v1::GenerateRequest req;
  req.set_prompt(prompt);
  req.mutable_options()->set_max_tokens(max_tokens);
  req.mutable_options()->mutable_sampling()->set_temperature(0);
  return req;
}

TEST_F(ServerGrpcTest, GreedyGenerateEqualsAnvilGenerateAndStreams) {
  const std::string prompt = "The capital of France is";
  absl::StatusOr<std::string> want = AnvilGenerate(prompt, 24, /*chat=*/false);
  ASSERT_TRUE(want.ok()) << want.status();
  const Streamed s = Generate(Greedy(prompt, 24));
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.text, *want);
  ASSERT_GE(s.messages.size(), 3u) << "tokens did not stream";
  const v1::GenerateResponse& last = s.messages.back();
  EXPECT_NE(last.finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  for (size_t i = 0; i + 1 < s.messages.size(); ++i) {
    EXPECT_EQ(s.messages[i].finish_reason(), v1::FINISH_REASON_UNSPECIFIED);
  }
  EXPECT_EQ(last.usage().completion_tokens(), s.tokens);
  EXPECT_EQ(last.usage().prompt_tokens(),
            static_cast<int64_t>(model_->tokenizer().Encode(prompt, true, true).size()));
  EXPECT_EQ(last.finish_reason(),
            s.tokens == 24 ? v1::FINISH_REASON_LENGTH : v1::FINISH_REASON_STOP);
  // The pieces are the tokens' bytes.
  std::vector<int32_t> ids;
  for (const auto& m : s.messages) {
    for (const auto& t : m.tokens()) {
      EXPECT_EQ(t.piece(), model_->tokenizer().TokenToPiece(t.id()));
      ids.push_back(t.id());
    }
  }
  EXPECT_EQ(model_->tokenizer().Decode(ids), *want);
}

TEST_F(ServerGrpcTest, GreedyChatEqualsAnvilGenerateChat) {
  const std::string question = "What is the capital of France?";
  absl::StatusOr<std::string> want = AnvilGenerate(question, 32, /*chat=*/true);
  ASSERT_TRUE(want.ok()) << want.status();
  v1::ChatRequest req;
  v1::ChatMessage* m = req.add_messages();
  m->set_role("user");
  m->set_content(question);
  req.mutable_options()->set_max_tokens(32);
  req.mutable_options()->mutable_sampling()->set_temperature(0);
  const Streamed s = Chat(req);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.text, *want);
}

TEST_F(ServerGrpcTest, LogprobsAndIgnoreEos) {
  v1::GenerateRequest req = Greedy("Hello", 6);
  req.mutable_options()->set_logprobs(true);
  req.mutable_options()->set_top_logprobs(2);
  req.mutable_options()->set_ignore_eos(true);
  const Streamed s = Generate(req);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.tokens, 6);
  EXPECT_EQ(s.messages.back().finish_reason(), v1::FINISH_REASON_LENGTH);
  for (const auto& msg : s.messages) {
    for (const auto& t : msg.tokens()) {
      ASSERT_EQ(t.top_logprobs_size(), 2);
      EXPECT_EQ(t.top_logprobs(0).token(), t.id());  // greedy: the most likely token
      EXPECT_FLOAT_EQ(t.top_logprobs(0).logprob(), t.logprob());
      EXPECT_LE(t.logprob(), 0.0f);
    }
  }
}

TEST_F(ServerGrpcTest, TokenizeDetokenizeEmbedModelInfo) {
  auto stub = server_->Grpc();
  const std::string text = "<|im_start|>user\nHello, world! 🙂";
  {
    grpc::ClientContext ctx;
    server_->Prepare(&ctx);
    v1::TokenizeRequest req;
    req.set_text(text);
    req.set_add_special(true);
    req.set_parse_special(true);
    v1::TokenizeResponse resp;
    ASSERT_TRUE(stub->Tokenize(&ctx, req, &resp).ok());
    const std::vector<int32_t> want = model_->tokenizer().Encode(text, true, true);
    EXPECT_EQ(std::vector<int32_t>(resp.tokens().begin(), resp.tokens().end()), want);
    ASSERT_EQ(resp.pieces_size(), resp.tokens_size());
    grpc::ClientContext ctx2;
    server_->Prepare(&ctx2);
    v1::DetokenizeRequest dreq;
    *dreq.mutable_tokens() = resp.tokens();
    v1::DetokenizeResponse dresp;
    ASSERT_TRUE(stub->Detokenize(&ctx2, dreq, &dresp).ok());
    EXPECT_EQ(dresp.text(), text);
  }
  {
    grpc::ClientContext ctx;
    server_->Prepare(&ctx);
    v1::EmbedRequest req;
    req.add_inputs("hello world");
    req.add_inputs("hello world");
    req.add_inputs("a different text");
    v1::EmbedResponse resp;
    ASSERT_TRUE(stub->Embed(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.embeddings_size(), 3);
    for (const auto& e : resp.embeddings()) {
      ASSERT_EQ(e.values_size(), 576);
      double norm = 0;
      for (float x : e.values()) norm += static_cast<double>(x) * x;
      EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-4);
    }
    EXPECT_EQ(resp.embeddings(0).SerializeAsString(), resp.embeddings(1).SerializeAsString());
    EXPECT_NE(resp.embeddings(0).SerializeAsString(), resp.embeddings(2).SerializeAsString());
  }
  {
    grpc::ClientContext ctx;
    server_->Prepare(&ctx);
    v1::ModelInfoResponse info;
    ASSERT_TRUE(stub->ModelInfo(&ctx, v1::ModelInfoRequest(), &info).ok());
    EXPECT_EQ(info.id(), "SmolLM2-135M-Instruct.Q4_1");
    EXPECT_EQ(info.architecture(), "llama");
    EXPECT_EQ(info.n_vocab(), model_->config().n_vocab);
    EXPECT_EQ(info.n_embd(), 576);
    EXPECT_EQ(info.n_layer(), 30);
    EXPECT_EQ(info.n_ctx(), 2048);
    EXPECT_EQ(info.chat_template(), "chatml");
    EXPECT_EQ(info.max_running(), 16);
    EXPECT_EQ(info.max_queue(), 64);
  }
}

// grpc.health.v1 answers SERVING once the model is loaded (no token needed).
TEST_F(ServerGrpcTest, HealthIsServing) {
  absl::StatusOr<std::string> h = GrpcHealth(server_->grpc_address);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, std::string("\x08\x01", 2));
}

// Server reflection lists the Inference service: a generic bidi call to
// grpc.reflection.v1alpha.ServerReflection with ServerReflectionRequest{list_services: ""}
// (field 7, bytes 3a 00); the answer names the services.
TEST_F(ServerGrpcTest, ReflectionListsTheService) {
  grpc::GenericStub stub(
      grpc::CreateChannel(server_->grpc_address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  auto step = [&cq](intptr_t want) {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok && reinterpret_cast<intptr_t>(tag) == want;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(step(1));
  grpc::Slice req_slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer req(&req_slice, 1), resp;
  call->Write(req, reinterpret_cast<void*>(2));
  ASSERT_TRUE(step(2));
  call->Read(&resp, reinterpret_cast<void*>(3));
  ASSERT_TRUE(step(3));
  call->WritesDone(reinterpret_cast<void*>(4));
  ASSERT_TRUE(step(4));
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  ASSERT_TRUE(step(5));
  EXPECT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(resp.Dump(&slices).ok());
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_NE(bytes.find("anvil.v1.Inference"), std::string::npos);
  EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
}

// Every method answers UNAUTHENTICATED without the token and with a wrong one.
TEST_F(ServerGrpcTest, EveryMethodNeedsTheToken) {
  auto stub = server_->Grpc();
  for (const std::string& token : {std::string(), std::string("wrong-token")}) {
    SCOPED_TRACE("token '" + token + "'");
    auto prep = [&](grpc::ClientContext* ctx) {
      if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
      ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    };
    std::vector<std::pair<std::string, grpc::Status>> results;
    {
      grpc::ClientContext ctx;
      prep(&ctx);
      auto r = stub->Generate(&ctx, Greedy("hi", 2));
      v1::GenerateResponse m;
      while (r->Read(&m)) {
      }
      results.emplace_back("Generate", r->Finish());
    }
    {
      grpc::ClientContext ctx;
      prep(&ctx);
      v1::ChatRequest req;
      req.add_messages()->set_content("hi");
      auto r = stub->Chat(&ctx, req);
      v1::GenerateResponse m;
      while (r->Read(&m)) {
      }
      results.emplace_back("Chat", r->Finish());
    }
#define ANVIL_UNARY(Method, Req, Resp)                                   \
  {                                                                      \
    grpc::ClientContext ctx;                                             \
    prep(&ctx);                                                          \
    v1::Req req;                                                         \
    v1::Resp resp;                                                       \
    results.emplace_back(#Method, stub->Method(&ctx, req, &resp));       \
  }
    ANVIL_UNARY(Tokenize, TokenizeRequest, TokenizeResponse)
    ANVIL_UNARY(Detokenize, DetokenizeRequest, DetokenizeResponse)
    ANVIL_UNARY(Embed, EmbedRequest, EmbedResponse)
    ANVIL_UNARY(ModelInfo, ModelInfoRequest, ModelInfoResponse)
    ANVIL_UNARY(LoadAdapter, LoadAdapterRequest, LoadAdapterResponse)
    ANVIL_UNARY(UnloadAdapter, UnloadAdapterRequest, UnloadAdapterResponse)
#undef ANVIL_UNARY
    ASSERT_EQ(results.size(), 8u);
    for (const auto& [method, s] : results) {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << method << ": "
                                                                   << s.error_message();
    }
  }
}

TEST_F(ServerGrpcTest, BadRequestsAreInvalidArgumentOrNotFound) {
  struct Case {
    std::string name;
    v1::GenerateRequest req;
    grpc::StatusCode code;
  };
  std::vector<Case> cases;
  cases.push_back({"empty prompt", Greedy("", 4), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"negative max_tokens", Greedy("hi", -1), grpc::StatusCode::INVALID_ARGUMENT});
  cases.push_back({"huge max_tokens", Greedy("hi", 1 << 30), grpc::StatusCode::INVALID_ARGUMENT});
  {
    v1::GenerateRequest r = Greedy("hi", 4);
    r.mutable_options()->mutable_sampling()->set_temperature(-1);
    cases.push_back({"negative temperature", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    v1::GenerateRequest r = Greedy("hi", 4);
    r.mutable_options()->mutable_sampling()->set_top_p(2);
    cases.push_back({"top_p 2", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    v1::GenerateRequest r = Greedy("hi", 4);
    r.mutable_options()->set_top_logprobs(3);
    cases.push_back({"top_logprobs without logprobs", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    v1::GenerateRequest r = Greedy("", 4);
    r.add_prompt_tokens(1);
    r.add_prompt_tokens(1 << 30);
    cases.push_back({"token id out of range", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    v1::GenerateRequest r = Greedy("hi", 4);
    r.add_prompt_tokens(1);
    cases.push_back({"prompt and prompt_tokens", r, grpc::StatusCode::INVALID_ARGUMENT});
  }
  {
    v1::GenerateRequest r = Greedy("hi", 4);
    r.mutable_options()->set_adapter("nope");
    cases.push_back({"unknown adapter", r, grpc::StatusCode::NOT_FOUND});
  }
  for (const Case& c : cases) {
    const Streamed s = Generate(c.req);
    EXPECT_EQ(s.status.error_code(), c.code) << c.name << ": " << s.status.error_message();
    EXPECT_TRUE(s.messages.empty()) << c.name;
  }
  v1::ChatRequest bad_role;
  v1::ChatMessage* m = bad_role.add_messages();
  m->set_role("wizard");
  m->set_content("hi");
  EXPECT_EQ(Chat(bad_role).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Chat(v1::ChatRequest()).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Still serving.
  EXPECT_TRUE(Generate(Greedy("hi", 2)).status.ok());
}

TEST_F(ServerGrpcTest, DeadlineEndsTheCall) {
  auto stub = server_->Grpc();
  grpc::ClientContext ctx;
  rpc::PrepareContext(&ctx, server_->token, std::chrono::milliseconds(300));
  v1::GenerateRequest req = Greedy("Write a long story about a dragon.", 2000);
  req.mutable_options()->set_ignore_eos(true);
  auto r = stub->Generate(&ctx, req);
  v1::GenerateResponse m;
  while (r->Read(&m)) {
  }
  EXPECT_EQ(r->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_TRUE(Generate(Greedy("hi", 2)).status.ok());
}

}  // namespace
}  // namespace anvil::testing
