// Run-time LoRA adapters through both APIs of a real anvil-server (real SmolLM2 Q4_1 model):
// loaded at start (--adapter) and at run time (POST /v1/adapters, gRPC LoadAdapter), chosen per
// request ("model": "base+name" / options.adapter), listed by /v1/models, unloaded; an adapted
// request's output changes while the base model's stays equal to `anvil generate`; duplicate and
// missing adapters get 409 / 404 (ALREADY_EXISTS / NOT_FOUND).
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "model/llama_model.h"
#include "model/lora.h"
#include "tests/testing/random_lora.h"
#include "tests/testing/server_harness.h"
#include "train/export.h"

namespace anvil::testing {
namespace {

using Json = nlohmann::json;

constexpr char kId[] = "SmolLM2-135M-Instruct.Q4_1";

// A deterministic random rank-4 adapter on q, v, gate and down of every layer, as a llama.cpp
// adapter GGUF for `base`.
absl::Status WriteAdapter(const LlamaModel& base, uint32_t seed, const std::string& path) {
  const LoraAdapters lora = testing::RandomLora(base.config(), seed);
  return train::WriteLoraGguf(lora, base.file(), path);
}

Json Complete(ServerProcess& s, const std::string& model, int* status = nullptr) {
  auto c = s.Http();
  httplib::Result r = c->Post("/v1/completions",
                              Json{{"model", model}, {"prompt", "The capital of France is"},
                                   {"max_tokens", 12}, {"temperature", 0}}
                                  .dump(),
                              "application/json");
  if (!r) return Json();
  if (status != nullptr) *status = r->status;
  return Json::parse(r->body, nullptr, false);
}

TEST(ServerAdapterTest, AdaptersPerRequestOverBothApis) {
  const std::string dir = MakeTempDir("server_adapter");
  auto base = LlamaModel::Load(Q41ModelPath());
  ASSERT_TRUE(base.ok()) << base.status();
  ASSERT_TRUE(WriteAdapter(**base, 42, dir + "/a.gguf").ok());
  ASSERT_TRUE(WriteAdapter(**base, 7, dir + "/b.gguf").ok());
  auto s = ServerProcess::Start(dir, /*with_token=*/true, {"--adapter", "a=" + dir + "/a.gguf"});
  ASSERT_TRUE(s.ok()) << s.status();
  ServerProcess& server = **s;
  absl::StatusOr<std::string> want = AnvilGenerate("The capital of France is", 12, false);
  ASSERT_TRUE(want.ok()) << want.status();

  // Base and adapted requests at the same time: the base one is unchanged.
  Json base_out, a_out;
  std::thread t1([&] { base_out = Complete(server, kId); });
  std::thread t2([&] { a_out = Complete(server, std::string(kId) + "+a"); });
  t1.join();
  t2.join();
  EXPECT_EQ(base_out["choices"][0]["text"], *want);
  ASSERT_TRUE(a_out["choices"].is_array()) << a_out.dump();
  EXPECT_NE(a_out["choices"][0]["text"], *want);
  EXPECT_EQ(a_out["model"], std::string(kId) + "+a");
  // Deterministic: the same adapted request gives the same text.
  EXPECT_EQ(Complete(server, std::string(kId) + "+a")["choices"][0]["text"],
            a_out["choices"][0]["text"]);

  // Run-time load over HTTP; listed; a second load of the name is 409, a missing file 404.
  auto c = server.Http();
  httplib::Result r = c->Post("/v1/adapters", Json{{"name", "b"}, {"path", dir + "/b.gguf"}}.dump(),
                              "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  r = c->Post("/v1/adapters", Json{{"name", "b"}, {"path", dir + "/b.gguf"}}.dump(),
              "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409) << r->body;
  r = c->Post("/v1/adapters", Json{{"name", "c"}, {"path", dir + "/none.gguf"}}.dump(),
              "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  r = c->Get("/v1/models");
  ASSERT_TRUE(r);
  std::vector<std::string> ids;
  const Json models = Json::parse(r->body);
  for (const Json& m : models["data"]) ids.push_back(m["id"]);
  EXPECT_EQ(ids, (std::vector<std::string>{kId, std::string(kId) + "+a", std::string(kId) + "+b"}));
  const Json b_out = Complete(server, std::string(kId) + "+b");
  EXPECT_NE(b_out["choices"][0]["text"], a_out["choices"][0]["text"]);

  // gRPC: the same adapter by options.adapter gives the same text as over HTTP.
  auto stub = server.Grpc();
  {
    grpc::ClientContext ctx;
    server.Prepare(&ctx);
    v1::GenerateRequest req;
    req.set_prompt("The capital of France is");
    req.mutable_options()->set_max_tokens(12);
    req.mutable_options()->mutable_sampling()->set_temperature(0);
    req.mutable_options()->set_adapter("b");
    auto rd = stub->Generate(&ctx, req);
    v1::GenerateResponse m;
    std::string text;
    while (rd->Read(&m)) text += m.text();
    ASSERT_TRUE(rd->Finish().ok());
    EXPECT_EQ(text, b_out["choices"][0]["text"]);
  }
  {
    grpc::ClientContext ctx;
    server.Prepare(&ctx);
    v1::LoadAdapterRequest req;
    req.set_name("a");
    req.set_path(dir + "/a.gguf");
    v1::LoadAdapterResponse resp;
    EXPECT_EQ(stub->LoadAdapter(&ctx, req, &resp).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  }
  {
    grpc::ClientContext ctx;
    server.Prepare(&ctx);
    v1::UnloadAdapterRequest req;
    req.set_name("a");
    v1::UnloadAdapterResponse resp;
    EXPECT_TRUE(stub->UnloadAdapter(&ctx, req, &resp).ok());
  }
  int status = 0;
  Complete(server, std::string(kId) + "+a", &status);
  EXPECT_EQ(status, 404);
  r = c->Delete("/v1/adapters/b");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  r = c->Delete("/v1/adapters/b");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  EXPECT_EQ(Complete(server, kId)["choices"][0]["text"], *want);
}

}  // namespace
}  // namespace anvil::testing
