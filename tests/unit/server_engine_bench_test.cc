// Not a test: a throughput probe for reports, disabled by default (the machine is shared and
// noisy; nothing here asserts a speed). Run it with
//   ./tests/server_engine_bench_test --gtest_also_run_disabled_tests
// It prints the aggregate decode rate of 1, 4 and 16 concurrent greedy streams of 128 tokens
// on SmolLM2-135M Q4_1 with 2 threads (ANVIL_BENCH_THREADS overrides), and the rate of
// anvil::Generate on one Context.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "model/generate.h"
#include "model/llama_model.h"
#include "server/engine.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::server {
namespace {

using ::anvil::testing::IsOk;

constexpr int32_t kTokens = 128;

TEST(EngineBench, DISABLED_AggregateDecodeRate) {
  auto m = LlamaModel::Load(testing::Q41ModelPath());
  ASSERT_THAT(m, IsOk());
  const LlamaModel& model = **m;
  const char* const topics[] = {"the sea",   "a cat",    "mountains", "the moon",
                                "a city",    "the rain", "a forest",  "winter",
                                "a library", "music",    "a bridge",  "the desert",
                                "a garden",  "trains",   "the stars", "a river"};
  auto prompt = [&](int i) {
    auto text = model.chat_template()->Render(
        {{"user", std::string("Write a long story about ") + topics[i % 16] + "."}}, true);
    return model.tokenizer().Encode(*text, true, true);
  };
  // ANVIL_BENCH_THREADS=1 takes the thread pool out of the picture.
  int threads = 2;
  if (const char* e = std::getenv("ANVIL_BENCH_THREADS"); e != nullptr) threads = std::atoi(e);
  if (std::getenv("ANVIL_BENCH_STREAMS") == nullptr) {
    ContextOptions co;
    co.n_ctx = 512;
    co.threads = threads;
    auto ctx = Context::Create(model, co);
    ASSERT_THAT(ctx, IsOk());
    GenerateOptions g;
    g.max_tokens = kTokens;
    g.stop_at_eog = false;
    g.sampling.temperature = 0;
    auto r = Generate(**ctx, prompt(0), g);
    ASSERT_THAT(r, IsOk());
    std::printf("Generate (1 Context): %.1f decode tok/s\n",
                (r->tokens.size() - 1) / r->decode_seconds);
  }
  // ANVIL_BENCH_STREAMS=16 runs one configuration only (for profiling).
  std::vector<int> configs = {1, 4, 16};
  if (const char* e = std::getenv("ANVIL_BENCH_STREAMS"); e != nullptr) configs = {std::atoi(e)};
  for (int n : configs) {
    EngineOptions o;
    o.threads = threads;
    o.n_ctx = 512;
    o.max_running = 16;
    // ANVIL_BENCH_KV_TYPE=f16 runs the engine with an F16 KV cache.
    if (const char* e = std::getenv("ANVIL_BENCH_KV_TYPE"); e != nullptr && e == std::string("f16")) {
      o.kv_type = DType::kF16;
    }
    // ANVIL_BENCH_MATMUL=fast runs it with the block-sum matmul order (anvil-server --matmul fast).
    if (const char* e = std::getenv("ANVIL_BENCH_MATMUL"); e != nullptr && e == std::string("fast")) {
      o.matmul = MatMulNumerics::kBlockSum;
    }
    auto engine = Engine::Create(model, o);
    ASSERT_THAT(engine, IsOk());
    std::vector<std::shared_ptr<Stream>> streams;
    const absl::Time t0 = absl::Now();
    for (int i = 0; i < n; ++i) {
      Request r;
      r.prompt = prompt(i);
      r.max_tokens = kTokens;
      r.stop_at_eog = false;
      r.sampling.temperature = 0;
      auto s = (*engine)->Submit(r);
      ASSERT_THAT(s, IsOk());
      streams.push_back(*s);
    }
    absl::Time last_first = absl::InfinitePast(), end = absl::InfinitePast();
    int64_t decoded = 0;
    for (auto& s : streams) {
      Event e;
      absl::Time t = absl::InfinitePast();
      while (s->Next(&e)) t = e.time;
      ASSERT_THAT(s->final().status, IsOk());
      last_first = std::max(last_first, s->final().first_token);
      end = std::max(end, t);
      decoded += static_cast<int64_t>(s->final().tokens.size());
    }
    const EngineStats st = (*engine)->Stats();
    // Decode phase: from the moment every stream has its first token to the last token.
    int64_t after_first = 0;
    for (auto& s : streams) after_first += static_cast<int64_t>(s->final().tokens.size()) - 1;
    std::printf(
        "%2d streams: %5.1f tok/s overall (%lld tokens in %.2f s incl. prefill), decode phase "
        "%5.1f tok/s aggregate, %lld steps\n",
        n, decoded / absl::ToDoubleSeconds(end - t0), static_cast<long long>(decoded),
        absl::ToDoubleSeconds(end - t0),
        (after_first - (n - 1)) / absl::ToDoubleSeconds(end - last_first),
        static_cast<long long>(st.steps));
  }
}

// A manual check of a real adapter: ANVIL_ADAPTER=<gguf or PEFT dir> (on the Q4_1 base), and
// optionally ANVIL_MERGED=<merged gguf> and ANVIL_BASE=<base gguf>: prints the greedy outputs
// of one chat prompt.
TEST(EngineBench, DISABLED_AdapterFromEnvironment) {
  const char* path = std::getenv("ANVIL_ADAPTER");
  if (path == nullptr) GTEST_SKIP() << "set ANVIL_ADAPTER";
  const char* base = std::getenv("ANVIL_BASE");
  auto m = LlamaModel::Load(base != nullptr ? base : testing::Q41ModelPath());
  ASSERT_THAT(m, IsOk());
  auto engine = Engine::Create(**m, EngineOptions{});
  ASSERT_THAT(engine, IsOk());
  ASSERT_THAT((*engine)->LoadAdapter("env", path), IsOk());
  const char* q = std::getenv("ANVIL_PROMPT");
  auto text = (*m)->chat_template()->Render(
      {{"user", q != nullptr ? q : "Find the named entities: Alice flew to Paris."}}, true);
  Request r;
  r.prompt = (*m)->tokenizer().Encode(*text, true, true);
  r.max_tokens = 48;
  r.sampling.temperature = 0;
  for (const char* adapter : {"", "env"}) {
    r.adapter = adapter;
    auto s = (*engine)->Submit(r);
    ASSERT_THAT(s, IsOk());
    Event e;
    while ((*s)->Next(&e)) {
    }
    std::printf("[%s] %s\n", adapter, (*s)->final().text.c_str());
  }
  if (const char* merged = std::getenv("ANVIL_MERGED"); merged != nullptr) {
    auto mm = LlamaModel::Load(merged);
    ASSERT_THAT(mm, IsOk());
    ContextOptions co;
    auto ctx = Context::Create(**mm, co);
    ASSERT_THAT(ctx, IsOk());
    GenerateOptions g;
    g.max_tokens = 48;
    g.sampling.temperature = 0;
    auto res = Generate(**ctx, r.prompt, g);
    ASSERT_THAT(res, IsOk());
    std::printf("[merged] %s\n", res->text.c_str());
  }
}

}  // namespace
}  // namespace anvil::server
