// The HTTP layer's pure parts, without a server: OpenAI request parsing and validation (every
// field's type and range, with the field named), the status -> HTTP/error-object table, the
// response and chunk shapes, SSE framing, and the Prometheus rendering of the metrics.
#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "model/llama_model.h"
#include "server/metrics.h"
#include "server/openai_errors.h"
#include "server/openai_request.h"
#include "server/openai_response.h"
#include "server/server_errors.h"
#include "tests/testing/paths.h"

namespace anvil::server {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

TEST(OpenAiRequestTest, ParsesEveryChatField) {
  const std::string body = R"({
    "model": "m+ad", "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null}],
    "max_completion_tokens": 7, "stop": ["\n", "END"], "temperature": 0.5, "top_p": 0.9,
    "top_k": 5, "min_p": 0.1, "seed": -3, "n": 2, "stream": true,
    "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 4,
    "response_format": {"type": "json_object"}, "ignore_eos": true, "user": "ignored",
    "frequency_penalty": 0, "unknown_field": {"x": 1}})";
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(body, /*chat=*/true, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->model, "m+ad");
  ASSERT_EQ(r->messages.size(), 3u);
  EXPECT_EQ(r->messages[0].role, "system");
  EXPECT_EQ(r->messages[1].content, "Hi there");
  EXPECT_EQ(r->messages[2].content, "");
  EXPECT_EQ(r->params.max_tokens, 7);
  EXPECT_EQ(r->params.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_FLOAT_EQ(*r->params.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*r->params.top_p, 0.9f);
  EXPECT_EQ(r->params.top_k, 5);
  EXPECT_FLOAT_EQ(*r->params.min_p, 0.1f);
  EXPECT_EQ(r->params.seed, static_cast<uint64_t>(-3));
  EXPECT_EQ(r->n, 2);
  EXPECT_TRUE(r->stream);
  EXPECT_TRUE(r->include_usage);
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->params.top_logprobs, 4);
  EXPECT_TRUE(r->params.json_object);
  EXPECT_TRUE(r->params.ignore_eos);
}

TEST(OpenAiRequestTest, ParsesCompletionPromptForms) {
  auto parse = [](const std::string& b) { return ParseCompletionRequest(b, false, {}); };
  EXPECT_EQ(parse(R"({"prompt": "abc"})")->prompt, "abc");
  EXPECT_EQ(parse(R"({"prompt": ["abc"]})")->prompt, "abc");
  EXPECT_EQ(parse(R"({"prompt": [1, 2, 3]})")->prompt_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(parse(R"({"prompt": [[4, 5]]})")->prompt_tokens, (std::vector<int32_t>{4, 5}));
  absl::StatusOr<CompletionRequest> r = parse(R"({"prompt": "x", "logprobs": 2})");
  EXPECT_TRUE(r->logprobs);
  EXPECT_EQ(r->params.top_logprobs, 2);
  r = parse(R"({"prompt": "x", "logprobs": null, "max_tokens": null})");
  EXPECT_FALSE(r->logprobs);
  EXPECT_EQ(r->params.top_logprobs, -1);
  EXPECT_FALSE(r->params.max_tokens.has_value());
}

struct ErrorCase {
  bool chat;
  std::string body;
  std::string param;  // "" = no param (body-level error)
};

TEST(OpenAiRequestTest, ErrorsNameTheField) {
  const std::string m = R"("messages": [{"role": "user", "content": "x"}])";
  const ErrorCase cases[] = {
      {false, "", ""},
      {false, "{", ""},
      {false, "null", ""},
      {false, R"({"prompt": "x",})", ""},
      {false, R"({"prompt": 5})", "prompt"},
      {false, R"({"prompt": ["a", "b"]})", "prompt"},
      {false, R"({"prompt": [1, 2.5]})", "prompt"},
      {false, R"({"prompt": [3000000000]})", "prompt"},
      {false, R"({"prompt": "x", "max_tokens": -5})", "max_tokens"},
      {false, R"({"prompt": "x", "max_tokens": 18446744073709551615})", "max_tokens"},
      {false, R"({"prompt": "x", "max_tokens": 1e3})", "max_tokens"},
      {false, R"({"prompt": "x", "temperature": 2.01})", "temperature"},
      {false, R"({"prompt": "x", "temperature": true})", "temperature"},
      {false, R"({"prompt": "x", "min_p": -0.1})", "min_p"},
      {false, R"({"prompt": "x", "repeat_penalty": 0})", "repeat_penalty"},
      {false, R"({"prompt": "x", "n": 9})", "n"},
      {false, R"({"prompt": "x", "seed": "7"})", "seed"},
      {false, R"({"prompt": "x", "stop": [1]})", "stop"},
      {false, R"({"prompt": "x", "echo": true})", "echo"},
      {false, R"({"prompt": "x", "best_of": 3})", "best_of"},
      {false, R"({"prompt": "x", "suffix": "y"})", "suffix"},
      {false, R"({"prompt": "x", "presence_penalty": 3})", "presence_penalty"},
      {false, R"({"prompt": "x", "logprobs": 21})", "logprobs"},
      {false, R"({"prompt": "x", "stream": true, "stream_options": 1})", "stream_options"},
      {false, R"({"prompt": "x", "model": 3})", "model"},
      {true, R"({"messages": [1]})", "messages[0]"},
      {true, R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
      {true, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
       "messages[0].content"},
      {true, "{" + m + R"(, "logprobs": 1})", "logprobs"},
      {true, "{" + m + R"(, "logprobs": true, "top_logprobs": 21})", "top_logprobs"},
      {true, "{" + m + R"(, "max_completion_tokens": 0})", "max_completion_tokens"},
      {true, "{" + m + R"(, "response_format": "json"})", "response_format"},
      {true, "{" + m + R"(, "function_call": "auto"})", "function_call"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.body);
    absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(c.body, c.chat, {});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ParamOf(r.status()).value_or(""), c.param) << r.status();
    if (!c.param.empty()) {
      EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.param));
    }
  }
}

TEST(OpenAiRequestTest, EmbeddingAndAdapterRequests) {
  absl::StatusOr<EmbeddingRequest> e =
      ParseEmbeddingRequest(R"({"input": ["a", "b"], "encoding_format": "base64"})", 4);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->texts, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(e->base64);
  e = ParseEmbeddingRequest(R"({"input": [[1, 2], [3]]})", 4);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->token_inputs.size(), 2u);
  EXPECT_EQ(ParamOf(ParseEmbeddingRequest(R"({"input": ["a", "b", "c"]})", 2).status()), "input");
  EXPECT_EQ(ParamOf(ParseEmbeddingRequest(R"({"input": ["a", [1]]})", 4).status()), "input");
  EXPECT_EQ(ParamOf(ParseEmbeddingRequest(R"({"input": [""]})", 4).status()), "input");
  absl::StatusOr<AdapterRequest> a = ParseAdapterRequest(R"({"name": "tune-1.v2", "path": "/p"})");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->name, "tune-1.v2");
  EXPECT_EQ(ParamOf(ParseAdapterRequest(R"({"name": "a+b", "path": "/p"})").status()), "name");
  EXPECT_EQ(ParamOf(ParseAdapterRequest(R"({"name": "a"})").status()), "path");
}

TEST(OpenAiErrorsTest, StatusToHttpAndErrorObject) {
  const std::pair<absl::StatusCode, int> table[] = {
      {absl::StatusCode::kInvalidArgument, 400},   {absl::StatusCode::kFailedPrecondition, 400},
      {absl::StatusCode::kOutOfRange, 400},        {absl::StatusCode::kUnauthenticated, 401},
      {absl::StatusCode::kPermissionDenied, 403},  {absl::StatusCode::kNotFound, 404},
      {absl::StatusCode::kAlreadyExists, 409},     {absl::StatusCode::kResourceExhausted, 429},
      {absl::StatusCode::kCancelled, 499},         {absl::StatusCode::kUnimplemented, 501},
      {absl::StatusCode::kUnavailable, 503},       {absl::StatusCode::kDeadlineExceeded, 504},
      {absl::StatusCode::kInternal, 500},          {absl::StatusCode::kDataLoss, 500}};
  for (const auto& [code, http] : table) EXPECT_EQ(HttpStatusFor(code), http) << code;
  const Json e = Json::parse(ErrorJson(InvalidParam("top_p", "must be in [0, 1], got 2")));
  EXPECT_EQ(e, Json::parse(R"({"error": {"message": "top_p: must be in [0, 1], got 2",
      "type": "invalid_request_error", "param": "top_p", "code": "invalid_request"}})"));
  const Json q = Json::parse(ErrorJson(absl::ResourceExhaustedError("queue full")));
  EXPECT_EQ(q["error"]["type"], "rate_limit_error");
  EXPECT_TRUE(q["error"]["param"].is_null());
  EXPECT_EQ(Json::parse(ErrorJsonFor(413, "too big"))["error"]["code"], "request_too_large");
}

class OpenAiResponseTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(testing::Q41ModelPath());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
  }
  static void TearDownTestSuite() { delete model_; }
  static LlamaModel* model_;
};
LlamaModel* OpenAiResponseTest::model_ = nullptr;

TEST_F(OpenAiResponseTest, ChatCompletionShape) {
  const Tokenizer& tok = model_->tokenizer();
  ResponseMeta meta{"chatcmpl-abc", 1700000000, "m", true};
  ChoiceResult c;
  c.text = "Paris";
  c.finish_reason = "stop";
  const int32_t paris = tok.Encode("Paris", false, false)[0];
  Event ev;
  ev.token = paris;
  ev.logprob = -0.25f;
  ev.top = {{paris, -0.25f}, {paris + 1, -2.0f}};
  c.events = {ev};
  const Json j = Json::parse(CompletionBody(meta, {c}, {10, 1, 4}, tok, /*logprobs=*/true));
  EXPECT_EQ(j["id"], "chatcmpl-abc");
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["created"], 1700000000);
  EXPECT_EQ(j["model"], "m");
  EXPECT_EQ(j["choices"][0]["message"], Json::parse(R"({"role": "assistant", "content": "Paris"})"));
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 10);
  EXPECT_EQ(j["usage"]["completion_tokens"], 1);
  EXPECT_EQ(j["usage"]["total_tokens"], 11);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
  const Json& lp = j["choices"][0]["logprobs"]["content"][0];
  EXPECT_EQ(lp["token"], tok.TokenToPiece(paris));
  EXPECT_FLOAT_EQ(lp["logprob"].get<float>(), -0.25f);
  EXPECT_EQ(lp["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][1]["token"], tok.TokenToPiece(paris + 1));
}

TEST_F(OpenAiResponseTest, ChunksAndSse) {
  const Tokenizer& tok = model_->tokenizer();
  ResponseMeta chat{"chatcmpl-x", 1, "m", true};
  ChunkPart first;
  first.first = true;
  first.text = "Hel";
  Json j = Json::parse(ChunkBody(chat, first, tok, false, /*include_usage=*/true));
  EXPECT_EQ(j["object"], "chat.completion.chunk");
  EXPECT_EQ(j["choices"][0]["delta"], Json::parse(R"({"role": "assistant", "content": "Hel"})"));
  EXPECT_TRUE(j["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(j.contains("usage") && j["usage"].is_null());
  ChunkPart last;
  last.index = 1;
  last.finish_reason = "length";
  j = Json::parse(ChunkBody(chat, last, tok, false, false));
  EXPECT_EQ(j["choices"][0]["index"], 1);
  EXPECT_EQ(j["choices"][0]["delta"], Json::object());
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(j.contains("usage"));
  ResponseMeta comp{"cmpl-x", 1, "m", false};
  j = Json::parse(ChunkBody(comp, first, tok, false, false));
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["choices"][0]["text"], "Hel");
  j = Json::parse(UsageChunkBody(chat, {3, 2, 0}));
  EXPECT_TRUE(j["choices"].empty());
  EXPECT_EQ(j["usage"]["total_tokens"], 5);
  EXPECT_EQ(SseData("{\"a\":1}"), "data: {\"a\":1}\n\n");
  EXPECT_STREQ(kSseDone, "data: [DONE]\n\n");
  // A piece that is half a UTF-8 character is replaced, never thrown.
  Event ev;
  ev.token = tok.Encode("🙂", false, false)[0];
  ChunkPart part;
  part.text = "x";
  part.events = {ev};
  EXPECT_FALSE(ChunkBody(chat, part, tok, true, false).empty());
}

TEST(OpenAiResponseShapesTest, ModelsAndEmbeddings) {
  const Json models = Json::parse(ModelsBody({"base", "base+a"}, 5));
  EXPECT_EQ(models, Json::parse(R"({"object": "list", "data": [
      {"id": "base", "object": "model", "created": 5, "owned_by": "anvil"},
      {"id": "base+a", "object": "model", "created": 5, "owned_by": "anvil"}]})"));
  const std::vector<std::vector<float>> v = {{1.0f, -0.5f}, {0.25f, 2.0f}};
  Json e = Json::parse(EmbeddingsBody("base", v, 7, false));
  EXPECT_EQ(e["data"][1]["embedding"], Json::parse("[0.25, 2.0]"));
  EXPECT_EQ(e["usage"], Json::parse(R"({"prompt_tokens": 7, "total_tokens": 7})"));
  e = Json::parse(EmbeddingsBody("base", v, 7, true));
  std::string raw;
  ASSERT_TRUE(absl::Base64Unescape(e["data"][0]["embedding"].get<std::string>(), &raw));
  ASSERT_EQ(raw.size(), 8u);
  float back[2];
  std::memcpy(back, raw.data(), 8);
  EXPECT_EQ(back[0], 1.0f);
  EXPECT_EQ(back[1], -0.5f);
}

TEST(MetricsTest, RendersCountersHistogramsAndGauges) {
  Metrics m;
  m.CountRequest("http", "/v1/completions", "200");
  m.CountRequest("http", "/v1/completions", "200");
  m.CountRequest("grpc", "Generate", "RESOURCE_EXHAUSTED");
  m.CountTokens(10, 4);
  m.ObserveTimeToFirstToken(absl::Milliseconds(40));   // le 0.05
  m.ObserveInterTokenLatency(absl::Milliseconds(10));  // le 0.01 (bounds are inclusive)
  m.ObserveInterTokenLatency(absl::Seconds(60));       // +Inf only
  EngineStats st;
  st.queued = 3;
  st.running = 2;
  st.kv_blocks_used = 5;
  st.kv_blocks_total = 20;
  st.batch_size_counts = {4, 0, 6};  // 4 steps of 1 sequence, 6 of 3
  const std::string text = m.Render(&st, "serving");
  for (const char* line : {
           "anvil_requests_total{api=\"http\",route=\"/v1/completions\",code=\"200\"} 2\n",
           "anvil_requests_total{api=\"grpc\",route=\"Generate\",code=\"RESOURCE_EXHAUSTED\"} 1\n",
           "anvil_prompt_tokens_total 10\n", "anvil_generation_tokens_total 4\n",
           "anvil_time_to_first_token_seconds_bucket{le=\"0.025\"} 0\n",
           "anvil_time_to_first_token_seconds_bucket{le=\"0.05\"} 1\n",
           "anvil_time_to_first_token_seconds_count 1\n",
           "anvil_inter_token_latency_seconds_bucket{le=\"0.01\"} 1\n",
           "anvil_inter_token_latency_seconds_bucket{le=\"30\"} 1\n",
           "anvil_inter_token_latency_seconds_bucket{le=\"+Inf\"} 2\n",
           "anvil_inter_token_latency_seconds_sum 60.01\n", "anvil_queue_depth 3\n",
           "anvil_running_sequences 2\n", "anvil_kv_cache_usage_ratio 0.25\n",
           "anvil_batch_size_bucket{le=\"1\"} 4\n", "anvil_batch_size_bucket{le=\"2\"} 4\n",
           "anvil_batch_size_bucket{le=\"3\"} 10\n", "anvil_batch_size_sum 22\n",
           "anvil_batch_size_count 10\n", "anvil_server_state{state=\"serving\"} 1\n",
           "anvil_server_state{state=\"draining\"} 0\n"}) {
    EXPECT_THAT(text, HasSubstr(line));
  }
  const std::string loading = m.Render(nullptr, "loading");
  EXPECT_THAT(loading, HasSubstr("anvil_server_state{state=\"loading\"} 1\n"));
  EXPECT_EQ(loading.find("anvil_queue_depth"), std::string::npos);
}

}  // namespace
}  // namespace anvil::server
