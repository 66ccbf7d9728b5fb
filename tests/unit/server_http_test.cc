// The OpenAI-compatible HTTP API of a real anvil-server process (real SmolLM2 Q4_1 model,
// loopback, bearer token), driven with httplib::Client: greedy output equals `anvil generate`,
// streaming is incremental, response shapes, logprobs, embeddings, metrics, and every error.
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "model/llama_model.h"
#include "tests/testing/server_harness.h"

namespace anvil::testing {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kModelId[] = "SmolLM2-135M-Instruct.Q4_1";

class ServerHttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto s = ServerProcess::Start(MakeTempDir("server_http"), /*with_token=*/true);
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = s->release();
    auto m = LlamaModel::Load(Q41ModelPath());
    ASSERT_TRUE(m.ok()) << m.status();
    model_ = m->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    delete model_;
    model_ = nullptr;
  }

  // Prompt tokens as the server counts them (special tokens parsed, BOS per the model).
  static int64_t PromptTokens(const std::string& text) {
    return static_cast<int64_t>(model_->tokenizer().Encode(text, true, true).size());
  }

  // POSTs JSON with the token; the parsed answer (or a failure with the raw body).
  static Json Post(const std::string& path, const Json& body, int expect_status = 200) {
    auto c = server_->Http();
    httplib::Result r = c->Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << "no response to " << path;
    if (!r) return Json();
    EXPECT_EQ(r->status, expect_status) << r->body;
    return Json::parse(r->body, nullptr, false);
  }

  static ServerProcess* server_;
  static LlamaModel* model_;
};
ServerProcess* ServerHttpTest::server_ = nullptr;
LlamaModel* ServerHttpTest::model_ = nullptr;

TEST_F(ServerHttpTest, GreedyCompletionEqualsAnvilGenerate) {
  const std::string prompt = "The capital of France is";
  absl::StatusOr<std::string> want = AnvilGenerate(prompt, 24, /*chat=*/false);
  ASSERT_TRUE(want.ok()) << want.status();
  const Json r = Post("/v1/completions",
                      {{"model", kModelId}, {"prompt", prompt}, {"max_tokens", 24},
                       {"temperature", 0}});
  EXPECT_EQ(r["choices"][0]["text"], *want);
  EXPECT_EQ(r["object"], "text_completion");
  EXPECT_THAT(r["id"].get<std::string>(), StartsWith("cmpl-"));
  EXPECT_EQ(r["model"], kModelId);
  EXPECT_EQ(r["choices"].size(), 1u);
  EXPECT_EQ(r["choices"][0]["index"], 0);
  EXPECT_TRUE(r["choices"][0]["logprobs"].is_null());
  const int64_t completion = r["usage"]["completion_tokens"];
  EXPECT_EQ(r["choices"][0]["finish_reason"], completion == 24 ? "length" : "stop");
  EXPECT_EQ(r["usage"]["prompt_tokens"], PromptTokens(prompt));
  EXPECT_EQ(r["usage"]["total_tokens"], r["usage"]["prompt_tokens"].get<int64_t>() + completion);
}

TEST_F(ServerHttpTest, GreedyChatEqualsAnvilGenerateChat) {
  const std::string question = "What is the capital of France?";
  absl::StatusOr<std::string> want = AnvilGenerate(question, 32, /*chat=*/true);
  ASSERT_TRUE(want.ok()) << want.status();
  const Json r = Post("/v1/chat/completions",
                      {{"model", kModelId},
                       {"messages", {{{"role", "user"}, {"content", question}}}},
                       {"max_tokens", 32},
                       {"temperature", 0}});
  EXPECT_EQ(r["object"], "chat.completion");
  EXPECT_THAT(r["id"].get<std::string>(), StartsWith("chatcmpl-"));
  EXPECT_EQ(r["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(r["choices"][0]["message"]["content"], *want);
  EXPECT_GT(r["usage"]["completion_tokens"].get<int64_t>(), 0);
}

TEST_F(ServerHttpTest, ChatStreamIsIncrementalAndMatchesTheWholeAnswer) {
  const Json body = {{"model", kModelId},
                     {"messages", {{{"role", "user"}, {"content", "Name three colors."}}}},
                     {"max_tokens", 24},
                     {"temperature", 0}};
  const Json whole = Post("/v1/chat/completions", body);
  Json sbody = body;
  sbody["stream"] = true;
  auto c = server_->Http();
  std::string raw;
  int receives = 0;
  httplib::Result r = PostStreaming(*c, "/v1/chat/completions", sbody.dump(),
                                    [&](const char* data, size_t n, uint64_t, uint64_t) {
                                      raw.append(data, n);
                                      ++receives;
                                      return true;
                                    });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  const std::vector<std::string> events = SsePayloads(raw);
  ASSERT_GE(events.size(), 4u) << raw;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  int content_chunks = 0;
  std::string finish;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const Json e = Json::parse(events[i]);
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    EXPECT_EQ(e["id"], Json::parse(events[0])["id"]);  // one id for the whole stream
    const Json& ch = e["choices"][0];
    if (i == 0) {
      EXPECT_EQ(ch["delta"]["role"], "assistant");
    }
    if (ch["delta"].contains("content")) {
      text += ch["delta"]["content"].get<std::string>();
      ++content_chunks;
    }
    if (!ch["finish_reason"].is_null()) finish = ch["finish_reason"];
  }
  EXPECT_EQ(text, whole["choices"][0]["message"]["content"]);
  EXPECT_EQ(finish, whole["choices"][0]["finish_reason"]);
  EXPECT_GE(content_chunks, 3);
  EXPECT_GE(receives, 3) << "the body arrived in " << receives << " pieces: not streamed";
}

TEST_F(ServerHttpTest, CompletionStreamWithUsage) {
  const Json body = {{"prompt", "Once upon a time"}, {"max_tokens", 12}, {"temperature", 0},
                     {"ignore_eos", true}, {"stream", true},
                     {"stream_options", {{"include_usage", true}}}};
  auto c = server_->Http();
  httplib::Result r = c->Post("/v1/completions", body.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const std::vector<std::string> events = SsePayloads(r->body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  const Json usage_chunk = Json::parse(events[events.size() - 2]);
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 12);
  EXPECT_EQ(usage_chunk["usage"]["prompt_tokens"], PromptTokens("Once upon a time"));
  const Json first = Json::parse(events[0]);
  EXPECT_EQ(first["object"], "text_completion");
  EXPECT_TRUE(first["usage"].is_null());
  EXPECT_EQ(Json::parse(events[events.size() - 3])["choices"][0]["finish_reason"], "length");
}

TEST_F(ServerHttpTest, ChatLogprobsOfGreedyTokensAreTheTopAlternatives) {
  const Json r = Post("/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", "Say hello."}}}},
                       {"max_tokens", 8},
                       {"temperature", 0},
                       {"logprobs", true},
                       {"top_logprobs", 3}});
  const Json& content = r["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), r["usage"]["completion_tokens"].get<size_t>());
  for (const Json& t : content) {
    ASSERT_EQ(t["top_logprobs"].size(), 3u);
    EXPECT_LE(t["logprob"].get<double>(), 0.0);
    // Greedy picks the most likely token: the chosen one is the first alternative.
    EXPECT_EQ(t["token"], t["top_logprobs"][0]["token"]);
    EXPECT_FLOAT_EQ(t["logprob"].get<float>(), t["top_logprobs"][0]["logprob"].get<float>());
    EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(),
              t["top_logprobs"][1]["logprob"].get<double>());
    std::string bytes;
    for (const Json& b : t["bytes"]) bytes.push_back(static_cast<char>(b.get<int>()));
    EXPECT_EQ(bytes, t["token"].get<std::string>());
  }
}

TEST_F(ServerHttpTest, JsonObjectResponseFormatGivesOneJsonObject) {
  const Json r = Post("/v1/chat/completions",
                      {{"messages", {{{"role", "user"}, {"content", "Describe a cat in JSON."}}}},
                       {"max_tokens", 64},
                       {"temperature", 0},
                       {"response_format", {{"type", "json_object"}}}});
  ASSERT_TRUE(r.is_object() && r.contains("choices")) << r.dump();
  const std::string content = r["choices"][0]["message"]["content"];
  if (r["choices"][0]["finish_reason"] == "stop") {
    const Json parsed = Json::parse(content, nullptr, false);
    EXPECT_TRUE(parsed.is_object()) << content;
  } else {
    EXPECT_THAT(content, StartsWith("{"));  // cut by max_tokens: an unfinished object
  }
}

TEST_F(ServerHttpTest, ModelsListsTheBaseModel) {
  auto c = server_->Http();
  httplib::Result r = c->Get("/v1/models");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const Json j = Json::parse(r->body);
  EXPECT_EQ(j["object"], "list");
  ASSERT_GE(j["data"].size(), 1u);
  EXPECT_EQ(j["data"][0]["id"], kModelId);
  EXPECT_EQ(j["data"][0]["object"], "model");
}

TEST_F(ServerHttpTest, EmbeddingsAreUnitVectorsInBothEncodings) {
  const Json f = Post("/v1/embeddings", {{"model", kModelId}, {"input", {"hello world", "goodbye"}}});
  ASSERT_EQ(f["data"].size(), 2u);
  EXPECT_EQ(f["object"], "list");
  std::vector<std::vector<float>> vecs;
  for (const Json& d : f["data"]) {
    EXPECT_EQ(d["object"], "embedding");
    std::vector<float> v = d["embedding"].get<std::vector<float>>();
    ASSERT_EQ(v.size(), 576u);
    double norm = 0;
    for (float x : v) norm += static_cast<double>(x) * x;
    EXPECT_NEAR(std::sqrt(norm), 1.0, 1e-4);
    vecs.push_back(std::move(v));
  }
  EXPECT_NE(vecs[0], vecs[1]);
  const Json b = Post("/v1/embeddings", {{"input", "hello world"}, {"encoding_format", "base64"}});
  std::string raw;
  ASSERT_TRUE(absl::Base64Unescape(b["data"][0]["embedding"].get<std::string>(), &raw));
  ASSERT_EQ(raw.size(), 576 * sizeof(float));
  std::vector<float> v(576);
  std::memcpy(v.data(), raw.data(), raw.size());
  EXPECT_EQ(v, vecs[0]);  // the same input gives the same vector, bit for bit
  EXPECT_EQ(b["usage"]["prompt_tokens"], PromptTokens("hello world"));
}

TEST_F(ServerHttpTest, HealthAndMetrics) {
  auto c = server_->Http();
  httplib::Result h = c->Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(h->body, "{\"status\":\"serving\"}");
  Post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 3}, {"temperature", 0},
                           {"ignore_eos", true}});
  httplib::Result m = c->Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  EXPECT_THAT(m->get_header_value("Content-Type"), StartsWith("text/plain"));
  for (const char* line :
       {"anvil_requests_total{api=\"http\",route=\"/v1/completions\",code=\"200\"} ",
        "anvil_server_state{state=\"serving\"} 1", "anvil_queue_depth 0",
        "anvil_running_sequences 0", "# TYPE anvil_time_to_first_token_seconds histogram",
        "anvil_inter_token_latency_seconds_bucket{le=\"+Inf\"} ", "anvil_kv_cache_blocks_total ",
        "anvil_kv_cache_usage_ratio ", "anvil_batch_size_bucket{le=\"1\"} ",
        "anvil_generation_tokens_total ", "anvil_prompt_tokens_total "}) {
    EXPECT_THAT(m->body, HasSubstr(line));
  }
}

// Every endpoint refuses a request without the token, or with a wrong one, before anything else.
TEST_F(ServerHttpTest, EveryEndpointNeedsTheToken) {
  struct Call {
    const char* method;
    const char* path;
  };
  const Call calls[] = {{"POST", "/v1/chat/completions"}, {"POST", "/v1/completions"},
                        {"GET", "/v1/models"},            {"POST", "/v1/embeddings"},
                        {"GET", "/health"},               {"GET", "/metrics"},
                        {"GET", "/v1/adapters"},          {"POST", "/v1/adapters"},
                        {"DELETE", "/v1/adapters/x"},     {"GET", "/no/such/route"}};
  const std::string body = R"({"prompt": "hi", "messages": [{"role": "user", "content": "hi"}],
                               "input": "hi", "max_tokens": 2})";
  for (const std::string& token : {std::string(), std::string("wrong-token")}) {
    for (const Call& call : calls) {
      SCOPED_TRACE(std::string(call.method) + " " + call.path + " token '" + token + "'");
      auto c = server_->Http(/*with_token=*/false);
      if (!token.empty()) c->set_bearer_token_auth(token);
      httplib::Result r = std::string(call.method) == "GET"    ? c->Get(call.path)
                          : std::string(call.method) == "POST" ? c->Post(call.path, body,
                                                                         "application/json")
                                                               : c->Delete(call.path);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 401);
      const Json e = Json::parse(r->body, nullptr, false);
      EXPECT_EQ(e["error"]["type"], "authentication_error") << r->body;
      EXPECT_EQ(r->get_header_value("WWW-Authenticate"), "Bearer");
    }
  }
}

struct BadRequest {
  const char* path;
  std::string body;
  int status;
  const char* param;  // nullptr: "param" is null
};

TEST_F(ServerHttpTest, BadRequestsGetOpenAiErrors) {
  const std::string chat = "/v1/chat/completions", comp = "/v1/completions";
  const std::string msgs = R"("messages": [{"role": "user", "content": "hi"}])";
  const BadRequest cases[] = {
      {"/v1/completions", "{not json", 400, nullptr},
      {"/v1/completions", "[1, 2]", 400, nullptr},
      {"/v1/completions", "", 400, nullptr},
      {"/v1/completions", R"({"max_tokens": 4})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": -1})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 0})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 1000000000000})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 5000})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": 2.5})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "max_tokens": "4"})", 400, "max_tokens"},
      {"/v1/completions", R"({"prompt": "hi", "temperature": -0.5})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "hi", "temperature": 1e300})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "hi", "temperature": "hot"})", 400, "temperature"},
      {"/v1/completions", R"({"prompt": "hi", "top_p": 1.5})", 400, "top_p"},
      {"/v1/completions", R"({"prompt": "hi", "top_k": -3})", 400, "top_k"},
      {"/v1/completions", R"({"prompt": "hi", "n": 0})", 400, "n"},
      {"/v1/completions", R"({"prompt": "hi", "n": 1000})", 400, "n"},
      {"/v1/completions", R"({"prompt": "hi", "seed": 1.5})", 400, "seed"},
      {"/v1/completions", R"({"prompt": "hi", "stream": "yes"})", 400, "stream"},
      {"/v1/completions", R"({"prompt": "hi", "stop": 5})", 400, "stop"},
      {"/v1/completions", R"({"prompt": "hi", "stop": ["a", ""]})", 400, "stop"},
      {"/v1/completions", R"({"prompt": "hi", "logprobs": 100})", 400, "logprobs"},
      {"/v1/completions", R"({"prompt": "hi", "logit_bias": {"1": 5}})", 400, "logit_bias"},
      {"/v1/completions", R"({"prompt": "hi", "frequency_penalty": 0.5})", 400,
       "frequency_penalty"},
      {"/v1/completions", R"({"prompt": [1, -2]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": [1, 99999999]})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": ""})", 400, "prompt"},
      {"/v1/completions", R"({"prompt": "hi", "stream_options": {"include_usage": true}})", 400,
       "stream_options"},
      {"/v1/chat/completions", R"({"messages": "hi"})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": []})", 400, "messages"},
      {"/v1/chat/completions", R"({"messages": [{"role": "user"}]})", 400, "messages[0].content"},
      {"/v1/chat/completions", R"({"messages": [{"role": 3, "content": "x"}]})", 400,
       "messages[0].role"},
      {"/v1/chat/completions", "{" + msgs + R"(, "top_logprobs": 2})", 400, "top_logprobs"},
      {"/v1/chat/completions", "{" + msgs + R"(, "response_format": {"type": "json_schema"}})",
       400, "response_format"},
      {"/v1/chat/completions", "{" + msgs + R"(, "tools": []})", 400, "tools"},
      {"/v1/chat/completions", "{" + msgs + R"(, "model": "gpt-4"})", 404, nullptr},
      {"/v1/chat/completions", "{" + msgs + R"(, "model": "SmolLM2-135M-Instruct.Q4_1+nope"})",
       404, nullptr},
      {"/v1/embeddings", R"({"input": []})", 400, "input"},
      {"/v1/embeddings", R"({"input": 7})", 400, "input"},
      {"/v1/embeddings", R"({"input": "x", "encoding_format": "int8"})", 400, "encoding_format"},
      {"/v1/adapters", R"({"name": "a b", "path": "/x"})", 400, "name"},
  };
  for (const BadRequest& b : cases) {
    SCOPED_TRACE(std::string(b.path) + " " + b.body);
    auto c = server_->Http();
    httplib::Result r = c->Post(b.path, b.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, b.status) << r->body;
    const Json e = Json::parse(r->body, nullptr, false);
    ASSERT_TRUE(e.is_object()) << r->body;
    ASSERT_TRUE(e["error"].is_object()) << r->body;
    EXPECT_FALSE(e["error"]["message"].get<std::string>().empty());
    EXPECT_EQ(e["error"]["type"], "invalid_request_error");
    EXPECT_EQ(e["error"]["code"], b.status == 404 ? "not_found" : "invalid_request");
    if (b.param == nullptr) {
      EXPECT_TRUE(e["error"]["param"].is_null()) << r->body;
    } else {
      EXPECT_EQ(e["error"]["param"], b.param) << r->body;
    }
  }
  // The server is unharmed.
  Post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}});
}

TEST_F(ServerHttpTest, OversizedBodyIs413) {
  auto c = server_->Http();
  const std::string big = R"({"prompt": ")" + std::string(5 << 20, 'a') + R"("})";
  httplib::Result r = c->Post("/v1/completions", big, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  const Json e = Json::parse(r->body, nullptr, false);
  EXPECT_EQ(e["error"]["code"], "request_too_large") << r->body;
  Post("/v1/completions", {{"prompt", "Hi"}, {"max_tokens", 2}});  // still serving
}

TEST_F(ServerHttpTest, TooLongPromptIs400) {
  std::string prompt;
  for (int i = 0; i < 3000; ++i) prompt += " hello";
  const Json e = Post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 2}}, 400);
  EXPECT_EQ(e["error"]["type"], "invalid_request_error");
}

TEST_F(ServerHttpTest, SeveralChoicesWithSeeds) {
  const Json body = {{"prompt", "My favourite animal is"}, {"max_tokens", 8}, {"n", 3},
                     {"temperature", 1.0}, {"seed", 7}};
  const Json a = Post("/v1/completions", body);
  const Json b = Post("/v1/completions", body);
  ASSERT_EQ(a["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(a["choices"][i]["index"], i);
    EXPECT_EQ(a["choices"][i]["text"], b["choices"][i]["text"]);  // same seed, same draws
  }
  EXPECT_EQ(a["usage"]["prompt_tokens"], PromptTokens("My favourite animal is"));
}

}  // namespace
}  // namespace anvil::testing
