// anvil-server under pressure, as real processes on loopback with the real model: a full queue
// refuses the excess at once (HTTP 429 + Retry-After, gRPC RESOURCE_EXHAUSTED) while the admitted
// requests finish; streams cut by their clients free their slots; SIGTERM under load flips
// health (HTTP and grpc.health.v1), refuses new calls (503 / UNAVAILABLE), lets the in-flight
// ones finish and exits 0.
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "tests/testing/server_harness.h"

namespace anvil::testing {
namespace {

using Json = nlohmann::json;

// A gauge's value from /metrics ("name value" line), -1 when absent.
double Gauge(ServerProcess& s, const std::string& name) {
  auto c = s.Http();
  httplib::Result r = c->Get("/metrics");
  if (!r || r->status != 200) return -1;
  const size_t at = r->body.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  const size_t start = at + name.size() + 2;
  double v = -1;
  if (!absl::SimpleAtod(r->body.substr(start, r->body.find('\n', start) - start), &v)) return -1;
  return v;
}

bool WaitFor(const std::function<bool()>& cond, int seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// A gRPC Generate stream on its own thread, counting what arrives.
struct GrpcStream {
  grpc::ClientContext ctx;
  std::atomic<int> tokens{0};
  std::atomic<bool> finished{false};
  grpc::Status status;
  std::thread thread;

  void Start(ServerProcess& s, int max_tokens) {
    s.Prepare(&ctx);
    thread = std::thread([this, &s, max_tokens] {
      auto stub = s.Grpc();
      v1::GenerateRequest req;
      req.set_prompt("Tell me a long story about a lighthouse keeper.");
      req.mutable_options()->set_max_tokens(max_tokens);
      req.mutable_options()->set_ignore_eos(true);
      req.mutable_options()->mutable_sampling()->set_temperature(0);
      auto r = stub->Generate(&ctx, req);
      v1::GenerateResponse m;
      while (r->Read(&m)) tokens += m.tokens_size();
      status = r->Finish();
      finished = true;
    });
  }
  void Join() {
    if (thread.joinable()) thread.join();
  }
  ~GrpcStream() {
    ctx.TryCancel();
    Join();
  }
};

// --max-running 2 --max-queue 2: with 2 running and 2 queued, 12 more requests (4x the 4 the
// server holds) are refused at once over both APIs, and the 4 admitted finish in full.
TEST(ServerRobustnessTest, FullQueueRefusesTheExcessAtOnce) {
  auto s = ServerProcess::Start(MakeTempDir("server_queue"), /*with_token=*/false,
                                {"--max-running", "2", "--max-queue", "2"});
  ASSERT_TRUE(s.ok()) << s.status();
  ServerProcess& server = **s;
  constexpr int kTokens = 64;
  GrpcStream admitted[4];
  admitted[0].Start(server, kTokens);
  admitted[1].Start(server, kTokens);
  ASSERT_TRUE(WaitFor([&] { return admitted[0].tokens > 0 && admitted[1].tokens > 0; }, 60));
  admitted[2].Start(server, kTokens);
  admitted[3].Start(server, kTokens);
  ASSERT_TRUE(WaitFor([&] { return Gauge(server, "anvil_queue_depth") == 2; }, 30))
      << "queue depth " << Gauge(server, "anvil_queue_depth");

  std::atomic<int> http_429{0}, grpc_exhausted{0}, slow{0};
  std::vector<std::thread> excess;
  for (int i = 0; i < 12; ++i) {
    excess.emplace_back([&, i] {
      const auto t0 = std::chrono::steady_clock::now();
      if (i % 2 == 0) {
        auto c = server.Http();
        httplib::Result r = c->Post("/v1/completions",
                                    R"({"prompt": "hi", "max_tokens": 4, "temperature": 0})",
                                    "application/json");
        if (r && r->status == 429 && r->get_header_value("Retry-After") == "1" &&
            Json::parse(r->body, nullptr, false)["error"]["type"] == "rate_limit_error") {
          ++http_429;
        }
      } else {
        auto stub = server.Grpc();
        grpc::ClientContext ctx;
        server.Prepare(&ctx);
        auto r = stub->Generate(&ctx, [] {
          v1::GenerateRequest req;
          req.set_prompt("hi");
          req.mutable_options()->set_max_tokens(4);
          return req;
        }());
        v1::GenerateResponse m;
        while (r->Read(&m)) {
        }
        if (r->Finish().error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) ++grpc_exhausted;
      }
      if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(2)) ++slow;
    });
  }
  for (auto& t : excess) t.join();
  EXPECT_EQ(http_429, 6);
  EXPECT_EQ(grpc_exhausted, 6);
  EXPECT_EQ(slow, 0) << "refusals must not wait for a slot";
  for (auto& a : admitted) {
    a.Join();
    EXPECT_TRUE(a.status.ok()) << a.status.error_message();
    EXPECT_EQ(a.tokens, kTokens);
  }
}

// 100 clients that go away mid-stream (8 HTTP readers that stop, 92 gRPC calls cancelled, running
// or queued) free their slots: the engine ends up with nothing running or queued, and the
// server still answers.
TEST(ServerRobustnessTest, DisconnectedStreamsFreeTheirSlots) {
  auto s = ServerProcess::Start(MakeTempDir("server_cancel"), /*with_token=*/true,
                                {"--max-running", "8", "--max-queue", "96"});
  ASSERT_TRUE(s.ok()) << s.status();
  ServerProcess& server = **s;
  std::vector<std::thread> http;
  std::atomic<int> http_cut{0};
  for (int i = 0; i < 8; ++i) {
    http.emplace_back([&] {
      auto c = server.Http();
      int chunks = 0;
      httplib::Result r = PostStreaming(
          *c, "/v1/completions",
          R"({"prompt": "Once upon a time", "max_tokens": 2000, "ignore_eos": true,
              "stream": true, "temperature": 0})",
          [&](const char*, size_t, uint64_t, uint64_t) { return ++chunks < 3; });
      if (!r && r.error() == httplib::Error::Canceled) ++http_cut;
    });
  }
  constexpr int kGrpc = 92;  // with the 8 HTTP streams: 100 cut mid-generation or in the queue
  std::vector<std::unique_ptr<GrpcStream>> grpc_streams;
  for (int i = 0; i < kGrpc; ++i) {
    grpc_streams.push_back(std::make_unique<GrpcStream>());
    grpc_streams.back()->Start(server, 2000);
  }
  // The HTTP streams hold the 8 slots until their clients leave; then some gRPC streams run.
  const bool some_ran = WaitFor([&] {
    for (auto& g : grpc_streams) {
      if (g->tokens > 2) return true;
    }
    return false;
  }, 120);
  EXPECT_TRUE(some_ran) << "no gRPC stream ran: the cut HTTP streams kept their slots?";
  for (auto& g : grpc_streams) g->ctx.TryCancel();
  for (auto& t : http) t.join();
  for (auto& g : grpc_streams) {
    g->Join();
    EXPECT_EQ(g->status.error_code(), grpc::StatusCode::CANCELLED);
    EXPECT_LT(g->tokens, 2000);
  }
  EXPECT_EQ(http_cut, 8);
  EXPECT_TRUE(WaitFor([&] {
    return Gauge(server, "anvil_running_sequences") == 0 && Gauge(server, "anvil_queue_depth") == 0;
  }, 20)) << "running " << Gauge(server, "anvil_running_sequences") << " queued "
          << Gauge(server, "anvil_queue_depth");
  auto c = server.Http();
  httplib::Result r = c->Post("/v1/completions", R"({"prompt": "hi", "max_tokens": 2})",
                              "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(ServerRobustnessTest, SigtermUnderLoadDrainsAndExitsZero) {
  auto s = ServerProcess::Start(MakeTempDir("server_drain"), /*with_token=*/true,
                                {"--max-running", "4"});
  ASSERT_TRUE(s.ok()) << s.status();
  ServerProcess& server = **s;
  constexpr int kTokens = 96;
  GrpcStream inflight[4];
  for (auto& g : inflight) g.Start(server, kTokens);
  ASSERT_TRUE(WaitFor([&] {
    for (auto& g : inflight) {
      if (g.tokens == 0) return false;
    }
    return true;
  }, 60));
  server.process.Kill(SIGTERM);
  // New calls are refused while the admitted ones finish.
  auto c = server.Http();
  ASSERT_TRUE(WaitFor([&] {
    httplib::Result h = c->Get("/health");
    return h && h->status == 503;
  }, 10));
  absl::StatusOr<std::string> health = GrpcHealth(server.grpc_address);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, std::string("\x08\x02", 2));  // NOT_SERVING
  httplib::Result r = c->Post("/v1/completions", R"({"prompt": "hi", "max_tokens": 2})",
                              "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(Json::parse(r->body, nullptr, false)["error"]["code"], "service_unavailable");
  {
    auto stub = server.Grpc();
    grpc::ClientContext ctx;
    server.Prepare(&ctx);
    v1::GenerateRequest req;
    req.set_prompt("hi");
    auto rd = stub->Generate(&ctx, req);
    v1::GenerateResponse m;
    while (rd->Read(&m)) {
    }
    EXPECT_EQ(rd->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  for (auto& g : inflight) {
    g.Join();
    EXPECT_TRUE(g.status.ok()) << g.status.error_message();
    EXPECT_EQ(g.tokens, kTokens);
  }
  EXPECT_EQ(server.process.Wait(60), 0);
}

// `anvil serve MODEL` runs anvil-server in its place: same lines, same API, SIGTERM exits 0.
TEST(ServerRobustnessTest, AnvilServeRunsTheServer) {
  absl::StatusOr<Process> p =
      Process::Start({BuildPath("cli/anvil"), "serve", Q41ModelPath(), "--port", "0",
                      "--http-port", "0", "--max-running", "2"});
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::string> line = p->ReadUntil("anvil-server listening on ");
  ASSERT_TRUE(line.ok()) << line.status();
  ASSERT_TRUE(p->ReadUntil("anvil-server ready", 120).ok());
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(line->substr(line->rfind(':') + 1), &port)) << *line;
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);
  httplib::Result r = c.Post("/v1/completions",
                             R"({"prompt": "Hello", "max_tokens": 3, "temperature": 0,
                                 "ignore_eos": true})",
                             "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Json::parse(r->body)["usage"]["completion_tokens"], 3);
  p->Kill(SIGTERM);
  EXPECT_EQ(p->Wait(60), 0);
}

}  // namespace
}  // namespace anvil::testing
