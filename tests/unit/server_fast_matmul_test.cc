// anvil-server --matmul fast, as a real process on the real model: a greedy completion equals
// `anvil generate --matmul fast`; requests that run together in the continuous batch (prompts of
// different lengths, joining at different steps) each get the same greedy completion as when
// they run alone; and a bad --matmul value is refused at start.
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/testing/server_harness.h"

namespace anvil {
namespace {

using Json = nlohmann::json;
using ::anvil::testing::MakeTempDir;
using ::anvil::testing::ServerProcess;

const char* const kPrompts[] = {
    "The capital of France is",
    "Write a haiku about the sea.",
    "List three prime numbers:",
    "Once upon a time, in a small village by the mountains, there lived an old clockmaker who",
    "def fibonacci(n):",
    "The quick brown fox",
};
constexpr int kN = sizeof(kPrompts) / sizeof(kPrompts[0]);
constexpr int kMaxTokens = 32;

std::string Complete(const ServerProcess& server, const std::string& prompt) {
  auto c = server.Http();
  const Json body = {{"prompt", prompt}, {"max_tokens", kMaxTokens}, {"temperature", 0}};
  httplib::Result r = c->Post("/v1/completions", body.dump(), "application/json");
  EXPECT_TRUE(r) << "no response";
  if (!r) return "";
  EXPECT_EQ(r->status, 200) << r->body;
  const Json j = Json::parse(r->body, nullptr, false);
  if (!j.contains("choices")) return "";
  return j["choices"][0]["text"].get<std::string>();
}

TEST(ServerFastMatMul, BatchedCompletionsEqualAlone) {
  auto server = ServerProcess::Start(MakeTempDir("fast-matmul"), false, {"--matmul", "fast"});
  ASSERT_TRUE(server.ok()) << server.status();
  std::vector<std::string> alone(kN);
  for (int i = 0; i < kN; ++i) {
    alone[i] = Complete(**server, kPrompts[i]);
    EXPECT_FALSE(alone[i].empty()) << kPrompts[i];
  }
  // Alone, each equals `anvil generate --matmul fast` (the same order in a single Context).
  for (int i : {0, 3}) {
    absl::StatusOr<std::string> want =
        testing::AnvilGenerate(kPrompts[i], kMaxTokens, /*chat=*/false, " --matmul fast");
    ASSERT_TRUE(want.ok()) << want.status();
    EXPECT_EQ(alone[i], *want) << kPrompts[i];
  }
  // All at once, twice (they join the running batch at different steps each time).
  for (int round = 0; round < 2; ++round) {
    std::vector<std::string> together(kN);
    std::vector<std::thread> threads;
    for (int i = 0; i < kN; ++i) {
      threads.emplace_back([&, i] { together[i] = Complete(**server, kPrompts[i]); });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kN; ++i) {
      EXPECT_EQ(together[i], alone[i]) << "round " << round << ", prompt: " << kPrompts[i];
    }
  }
}

TEST(ServerFastMatMul, UnknownValueIsRefusedAtStart) {
  auto p = testing::Process::Start({testing::BuildPath("server/anvil-server"), "--model",
                                    testing::Q41ModelPath(), "--matmul", "fastest"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->Wait(30), 2);
}

}  // namespace
}  // namespace anvil
