// The batching engine on the real model (SmolLM2-135M Q4_1): every request's
// output equals anvil::Generate on a fresh Context with the same prompt and
// sampling, whatever runs beside it; exact status codes for every refusal;
// cancellation, deadlines and drain; KV blocks come back.
#include "server/engine.h"

#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "model/generate.h"
#include "model/llama_model.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace anvil::server {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

class EngineTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(testing::Q41ModelPath());
    ASSERT_THAT(m, IsOk());
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  static EngineOptions SmallOptions() {
    EngineOptions o;
    o.n_ctx = 512;
    o.max_running = 8;
    o.max_queue = 16;
    return o;
  }
  std::unique_ptr<Engine> NewEngine(const EngineOptions &o = SmallOptions()) {
    auto e = Engine::Create(*model_, o);
    EXPECT_THAT(e, IsOk());
    return std::move(e).value();
  }
  static std::vector<int32_t> Chat(const std::string &question) {
    auto text = model_->chat_template()->Render({{"user", question}}, true);
    EXPECT_THAT(text, IsOk());
    return model_->tokenizer().Encode(*text, true, true);
  }
  // The reference: Generate on a fresh Context.
  static GenerateResult Reference(const Request &r) {
    ContextOptions co;
    co.n_ctx = 512;
    auto ctx = Context::Create(*model_, co);
    EXPECT_THAT(ctx, IsOk());
    GenerateOptions g;
    g.max_tokens = r.max_tokens;
    g.stop = r.stop;
    g.stop_at_eog = r.stop_at_eog;
    g.sampling = r.sampling;
    auto res = Generate(**ctx, r.prompt, g);
    EXPECT_THAT(res, IsOk());
    return *res;
  }
  // A greedy request that cannot end before max_tokens (no EOG stop).
  static Request Endless(int32_t max_tokens) {
    Request r = Greedy(Chat("Tell me a long story about dragons."), max_tokens);
    r.stop_at_eog = false;
    return r;
  }
  static Request Greedy(std::vector<int32_t> prompt, int32_t max_tokens) {
    Request r;
    r.prompt = std::move(prompt);
    r.max_tokens = max_tokens;
    r.sampling.temperature = 0;
    return r;
  }
  // Drains a stream; returns the concatenated event text.
  static std::string Collect(Stream &s, std::vector<Event> *events = nullptr) {
    std::string text;
    Event e;
    while (s.Next(&e)) {
      text += e.text;
      if (events != nullptr)
        events->push_back(e);
    }
    return text;
  }
  static void ExpectSameAsGenerate(const Request &r, Stream &s) {
    std::vector<Event> events;
    const std::string streamed = Collect(s, &events);
    const GenerateResult want = Reference(r);
    const Final &f = s.final();
    ASSERT_THAT(f.status, IsOk());
    EXPECT_EQ(f.tokens, want.tokens);
    EXPECT_EQ(f.text, want.text);
    EXPECT_EQ(streamed, want.text);
    EXPECT_EQ(f.finish, want.finish);
    EXPECT_EQ(f.prompt_tokens, static_cast<int64_t>(r.prompt.size()));
    ASSERT_GE(events.size(), want.tokens.size());
    for (size_t i = 0; i < want.tokens.size(); ++i)
      EXPECT_EQ(events[i].token, want.tokens[i]);
  }
  static LlamaModel *model_;
};
LlamaModel *EngineTest::model_ = nullptr;

const char *const kQuestions[] = {
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Name three primary colors.",
    "Explain in one sentence why the sky is blue, please, and keep it short "
    "and simple.",
    "2+2=?",
    "List the planets of the solar system in order from the sun, separated by "
    "commas.",
    "Who wrote Hamlet?",
    "Translate 'good morning' into Spanish.",
    "What is photosynthesis? Answer briefly.",
    "Say hello.",
};

TEST_F(EngineTest, ConcurrentGreedyRequestsMatchGenerate) {
  auto engine = NewEngine();
  std::vector<Request> reqs;
  std::vector<std::shared_ptr<Stream>> streams;
  Event first;
  for (int i = 0; i < 10; ++i) {
    reqs.push_back(Greedy(Chat(kQuestions[i]), 8 + 3 * (i % 4)));
    if (i == 6) { // later arrivals join a running batch
      ASSERT_TRUE(streams[0]->Next(&first));
    }
    auto s = engine->Submit(reqs.back());
    ASSERT_THAT(s, IsOk());
    streams.push_back(*s);
  }
  EXPECT_EQ(first.token, Reference(reqs[0]).tokens[0]);
  for (int i = 0; i < 10; ++i) {
    SCOPED_TRACE(kQuestions[i]);
    if (i == 0) {
      EXPECT_EQ(first.text + Collect(*streams[0]), Reference(reqs[0]).text);
      continue;
    }
    ExpectSameAsGenerate(reqs[static_cast<size_t>(i)],
                         *streams[static_cast<size_t>(i)]);
  }
  ASSERT_TRUE(engine->WaitIdle(absl::Seconds(10)));
  const EngineStats st = engine->Stats();
  EXPECT_EQ(st.queued, 0);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);
  int64_t multi = 0;
  for (size_t i = 1; i < st.batch_size_counts.size(); ++i)
    multi += st.batch_size_counts[i];
  EXPECT_GT(multi, 0) << "no step ran more than one sequence";
  int64_t prompt_total = 0, generated = 0;
  for (const Request &r : reqs)
    prompt_total += static_cast<int64_t>(r.prompt.size());
  for (auto &s : streams)
    generated += static_cast<int64_t>(s->final().tokens.size());
  EXPECT_EQ(st.prompt_tokens_total, prompt_total);
  EXPECT_EQ(st.generated_tokens_total, generated);
  // Every token fed: the prompts (less what the prefix cache served) and the
  // generated tokens, but for a request that ended on its length, the last one
  // (never fed back).
  int64_t cached = 0, fed_generated = 0;
  for (auto &s : streams) {
    cached += s->final().cached_prompt_tokens;
    const int64_t n = static_cast<int64_t>(s->final().tokens.size());
    fed_generated +=
        s->final().finish == FinishReason::kEndOfGeneration ? n : n - 1;
  }
  EXPECT_EQ(st.step_tokens_total, prompt_total - cached + fed_generated);
  EXPECT_EQ(st.prefix_cache_hit_tokens, cached);
}

TEST_F(EngineTest, StopStringsAndSeededSamplingMatchGenerate) {
  auto engine = NewEngine();
  Request stop = Greedy(
      Chat("List the planets of the solar system, separated by commas."), 40);
  stop.stop = {"Mars", ", Jup"};
  Request sampled = Greedy(Chat("Tell me a short story about a cat."), 20);
  sampled.sampling.temperature = 0.9f;
  sampled.sampling.seed = 1234;
  sampled.sampling.repeat_penalty = 1.1f;
  auto s1 = engine->Submit(stop);
  auto s2 = engine->Submit(sampled);
  ASSERT_THAT(s1, IsOk());
  ASSERT_THAT(s2, IsOk());
  ExpectSameAsGenerate(stop, **s1);
  ExpectSameAsGenerate(sampled, **s2);
  EXPECT_EQ((*s1)->final().finish, FinishReason::kStop);
}

TEST_F(EngineTest, LogprobsAreLogSoftmaxOfTheLogits) {
  auto engine = NewEngine();
  Request r = Greedy(Chat("What is the capital of France?"), 1);
  r.top_logprobs = 5;
  auto s = engine->Submit(r);
  ASSERT_THAT(s, IsOk());
  std::vector<Event> events;
  Collect(**s, &events);
  ASSERT_EQ(events.size(), 1u);
  ContextOptions co;
  co.n_ctx = 512;
  auto ctx = Context::Create(*model_, co);
  ASSERT_THAT(ctx, IsOk());
  ASSERT_THAT((*ctx)->Eval(r.prompt), IsOk());
  const float *l = (*ctx)->logits(0);
  const int64_t v = (*ctx)->n_vocab();
  double z = 0;
  float mx = l[0];
  for (int64_t i = 0; i < v; ++i)
    mx = std::max(mx, l[i]);
  for (int64_t i = 0; i < v; ++i)
    z += std::exp(static_cast<double>(l[i]) - mx);
  const double log_z = mx + std::log(z);
  const int32_t best = Sampler::Argmax(l, v);
  EXPECT_EQ(events[0].token, best);
  EXPECT_NEAR(events[0].logprob, l[best] - log_z, 1e-5);
  ASSERT_EQ(events[0].top.size(), 5u);
  EXPECT_EQ(events[0].top[0].token, best);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_NEAR(events[0].top[i].logprob, l[events[0].top[i].token] - log_z,
                1e-5);
    if (i > 0) {
      EXPECT_LE(events[0].top[i].logprob, events[0].top[i - 1].logprob);
    }
  }
  // Without logprobs, none are reported.
  Request plain = Greedy(r.prompt, 1);
  auto s2 = engine->Submit(plain);
  ASSERT_THAT(s2, IsOk());
  events.clear();
  Collect(**s2, &events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0].top.empty());
}

TEST_F(EngineTest, InvalidRequestsAreRefusedNamingTheField) {
  EngineOptions o = SmallOptions();
  o.max_prompt_tokens = 64;
  o.max_tokens_limit = 100;
  o.max_top_logprobs = 5;
  auto engine = NewEngine(o);
  const std::vector<int32_t> p = Chat("Hi");
  auto refuse = [&](Request r, absl::StatusCode code,
                    const std::string &field) {
    auto s = engine->Submit(std::move(r));
    EXPECT_THAT(s, StatusIs(code, HasSubstr(field)));
  };
  refuse(Greedy({}, 4), absl::StatusCode::kInvalidArgument, "prompt");
  refuse(Greedy(std::vector<int32_t>(65, 1), 4),
         absl::StatusCode::kInvalidArgument, "max_prompt_tokens");
  refuse(Greedy({1, 2, -3}, 4), absl::StatusCode::kInvalidArgument,
         "prompt[2]");
  refuse(Greedy({1, 49152}, 4), absl::StatusCode::kInvalidArgument,
         "prompt[1]");
  refuse(Greedy(p, 0), absl::StatusCode::kInvalidArgument, "max_tokens");
  refuse(Greedy(p, 101), absl::StatusCode::kInvalidArgument, "max_tokens");
  Request r = Greedy(p, 4);
  r.top_logprobs = 6;
  refuse(r, absl::StatusCode::kInvalidArgument, "top_logprobs");
  r = Greedy(p, 4);
  r.sampling.top_p = 1.5f;
  refuse(r, absl::StatusCode::kInvalidArgument, "top_p");
  r = Greedy(p, 4);
  r.stop = {"ok", ""};
  refuse(r, absl::StatusCode::kInvalidArgument, "stop[1]");
  r = Greedy(p, 4);
  r.adapter = "nope";
  refuse(r, absl::StatusCode::kNotFound, "nope");
  EXPECT_THAT(
      Engine::Create(*model_,
                     [] {
                       EngineOptions b;
                       b.max_running = 0;
                       return b;
                     }()),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_running")));
  EXPECT_THAT(Engine::Create(*model_,
                             [] {
                               EngineOptions b;
                               b.max_step_tokens = 8;
                               return b;
                             }()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("max_step_tokens")));
  // A KV pool of 4 blocks of 16 positions cannot hold a request that may
  // need 65.
  EngineOptions tiny = SmallOptions();
  tiny.kv_blocks = 4;
  auto small = NewEngine(tiny);
  EXPECT_THAT(
      small->Submit(Greedy(std::vector<int32_t>(60, 1), 5)),
      StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("kv_blocks")));
  EXPECT_THAT(small->Submit(Greedy(std::vector<int32_t>(60, 1), 4)), IsOk());
  EXPECT_EQ(engine->Stats().prompt_tokens_total, 0);
}

TEST_F(EngineTest, QueueFullRefusesExactlyTheExcess) {
  EngineOptions o = SmallOptions();
  o.max_running = 3;
  o.max_queue = 4;
  auto engine = NewEngine(o);
  std::vector<std::shared_ptr<Stream>> admitted;
  int refused = 0;
  for (int i = 0; i < 3 + 4 + 5; ++i) {
    auto s = engine->Submit(Greedy(Chat(kQuestions[i % 10]), 3));
    if (s.ok()) {
      admitted.push_back(*s);
    } else {
      EXPECT_THAT(s, StatusIs(absl::StatusCode::kResourceExhausted,
                              HasSubstr("max_queue")));
      ++refused;
    }
  }
  EXPECT_EQ(refused, 5);
  ASSERT_EQ(admitted.size(), 7u);
  for (auto &s : admitted) {
    Collect(*s);
    EXPECT_THAT(s->final().status, IsOk());
    EXPECT_EQ(s->final().tokens.size(), 3u);
  }
  // Room again once they are done.
  auto again = engine->Submit(Greedy(Chat("Hi"), 1));
  EXPECT_THAT(again, IsOk());
}

TEST_F(EngineTest, CancelFreesTheBlocksWithinAStep) {
  auto engine = NewEngine();
  auto s = engine->Submit(Endless(400));
  ASSERT_THAT(s, IsOk());
  Event e;
  ASSERT_TRUE((*s)->Next(&e));
  EXPECT_GT(engine->Stats().kv_blocks_used, 0);
  const int64_t steps_at_cancel = engine->Stats().steps;
  (*s)->Cancel();
  while ((*s)->Next(&e)) {
  }
  EXPECT_THAT((*s)->final().status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ((*s)->final().finish, FinishReason::kCancelled);
  const EngineStats st = engine->Stats();
  EXPECT_EQ(st.kv_blocks_used, 0);
  // The step under way when Cancel came (its stats not yet published) may
  // finish; the next one sees the cancel before it runs anything.
  EXPECT_LE(st.steps, steps_at_cancel + 2);
  EXPECT_LT((*s)->final().tokens.size(), 400u);
}

TEST_F(EngineTest, HundredCancelledStreamsFreeAllBlocks) {
  EngineOptions o = SmallOptions();
  o.max_running = 16;
  o.max_queue = 100;
  o.n_ctx = 256;
  auto engine = NewEngine(o);
  std::vector<std::shared_ptr<Stream>> streams;
  for (int i = 0; i < 100; ++i) {
    Request r = Greedy(Chat(kQuestions[i % 10]), 200);
    r.stop_at_eog = false; // none may end on its own before the cancel
    auto s = engine->Submit(r);
    ASSERT_THAT(s, IsOk());
    streams.push_back(*s);
  }
  // The first ones may start before the rest are submitted: wait for a full
  // batch, generating.
  const absl::Time limit = absl::Now() + absl::Seconds(30);
  while (engine->Stats().running < 16 && absl::Now() < limit)
    absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(engine->Stats().running, 16);
  EXPECT_EQ(engine->Stats().queued, 84);
  Event e;
  ASSERT_TRUE(streams[15]->Next(&e));
  EXPECT_GT(engine->Stats().kv_blocks_used, 16);
  for (auto &s : streams)
    s->Cancel();
  ASSERT_TRUE(engine->WaitIdle(absl::Seconds(30)));
  for (auto &s : streams) {
    while (s->Next(&e)) {
    }
    EXPECT_THAT(s->final().status, StatusIs(absl::StatusCode::kCancelled));
  }
  const EngineStats st = engine->Stats();
  EXPECT_EQ(st.kv_blocks_used, 0);
  EXPECT_EQ(st.running, 0);
  EXPECT_EQ(st.queued, 0);
}

TEST_F(EngineTest, DeadlinesEndRequestsWithDeadlineExceeded) {
  auto engine = NewEngine();
  Request late = Endless(400);
  late.deadline = absl::Now() + absl::Milliseconds(300);
  Request past = Greedy(Chat("Hi"), 4);
  past.deadline = absl::Now() - absl::Seconds(1);
  auto s1 = engine->Submit(late);
  auto s2 = engine->Submit(past);
  ASSERT_THAT(s1, IsOk());
  ASSERT_THAT(s2, IsOk());
  Collect(**s1);
  Collect(**s2);
  EXPECT_THAT((*s1)->final().status,
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT((*s1)->final().tokens.size(), 400u);
  EXPECT_THAT((*s2)->final().status,
              StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_TRUE((*s2)->final().tokens.empty());
  EXPECT_TRUE(engine->WaitIdle(absl::Seconds(5)));
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

TEST_F(EngineTest, DrainFinishesWorkAndRefusesNewRequests) {
  EngineOptions o = SmallOptions();
  o.max_running = 2;
  auto engine = NewEngine(o);
  std::vector<std::shared_ptr<Stream>> streams;
  for (int i = 0; i < 4; ++i) { // two run, two wait
    auto s = engine->Submit(Greedy(Chat(kQuestions[i]), 5));
    ASSERT_THAT(s, IsOk());
    streams.push_back(*s);
  }
  engine->Drain();
  EXPECT_THAT(engine->Submit(Greedy(Chat("Hi"), 2)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("draining")));
  EXPECT_TRUE(engine->WaitIdle(absl::Seconds(60)));
  for (auto &s : streams) {
    Collect(*s);
    EXPECT_THAT(s->final().status, IsOk());
    EXPECT_EQ(s->final().tokens.size(), 5u);
  }
}

TEST_F(EngineTest, ShutdownEndsStreamsWithUnavailable) {
  auto engine = NewEngine();
  auto s = engine->Submit(Endless(400));
  ASSERT_THAT(s, IsOk());
  std::shared_ptr<Stream> stream = *s;
  Event e;
  ASSERT_TRUE(stream->Next(&e));
  engine.reset();
  while (stream->Next(&e)) {
  }
  EXPECT_THAT(stream->final().status, StatusIs(absl::StatusCode::kUnavailable));
}

TEST_F(EngineTest, TryNextAndWakeupDeliverEveryEvent) {
  auto engine = NewEngine();
  Request r = Greedy(Chat("Name three primary colors."), 8);
  auto s = engine->Submit(r);
  ASSERT_THAT(s, IsOk());
  absl::Mutex mu;
  int wakeups = 0;
  (*s)->SetWakeup([&] {
    absl::MutexLock lock(&mu);
    ++wakeups;
  });
  std::vector<int32_t> tokens;
  Event e;
  while (true) {
    Stream::Poll p = (*s)->TryNext(&e);
    if (p == Stream::Poll::kDone)
      break;
    if (p == Stream::Poll::kEvent)
      tokens.push_back(e.token);
    if (p == Stream::Poll::kPending)
      absl::SleepFor(absl::Milliseconds(1));
  }
  EXPECT_EQ(tokens, Reference(r).tokens);
  absl::MutexLock lock(&mu);
  EXPECT_GE(wakeups, 1);
}

TEST_F(EngineTest, EmbedIsTheNormalizedMeanOfTheFinalHiddenStates) {
  auto engine = NewEngine();
  const Tokenizer &tok = model_->tokenizer();
  const std::vector<int32_t> a =
      tok.Encode("The cat sat on the mat.", false, false);
  const std::vector<int32_t> b =
      tok.Encode("Stock prices fell sharply.", false, false);
  auto ea = engine->Embed(a);
  auto eb = engine->Embed(b);
  ASSERT_THAT(ea, IsOk());
  ASSERT_THAT(eb, IsOk());
  ASSERT_EQ(ea->size(), static_cast<size_t>(model_->config().n_embd));
  double na = 0, dot = 0;
  for (size_t i = 0; i < ea->size(); ++i) {
    na += (*ea)[i] * (*ea)[i];
    dot += (*ea)[i] * (*eb)[i];
  }
  EXPECT_NEAR(na, 1.0, 1e-5);
  EXPECT_LT(dot, 0.9999);
  // Independently: the final normalized state of token i is the last row of a
  // pass over the prefix a[0..i] (each its own Context, logits of the last row
  // only); their mean, normalized.
  std::vector<double> mean(static_cast<size_t>(model_->config().n_embd), 0.0);
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<float> row;
    ContextOptions co;
    co.n_ctx = 32;
    co.observer = [&](const std::string &name, int64_t, const float *d,
                      int64_t rows, int64_t cols) {
      if (name == "result_norm")
        row.assign(d + (rows - 1) * cols, d + rows * cols);
    };
    auto ctx = Context::Create(*model_, co);
    ASSERT_THAT(ctx, IsOk());
    ASSERT_THAT((*ctx)->Eval({a.data(), i + 1}), IsOk());
    ASSERT_EQ(row.size(), mean.size());
    for (size_t j = 0; j < row.size(); ++j)
      mean[j] += row[j] / static_cast<double>(a.size());
  }
  double nm = 0;
  for (double x : mean)
    nm += x * x;
  for (size_t j = 0; j < mean.size(); ++j) {
    EXPECT_NEAR((*ea)[j], mean[j] / std::sqrt(nm), 1e-4) << "element " << j;
  }
  // Longer than the engine's internal chunk of 64 rows: one whole-input pass
  // agrees.
  std::vector<int32_t> longer;
  while (longer.size() < 150)
    longer.insert(longer.end(), a.begin(), a.end());
  auto el = engine->Embed(longer);
  ASSERT_THAT(el, IsOk());
  std::vector<double> sum(mean.size(), 0.0);
  ContextOptions co;
  co.n_ctx = 256;
  co.observer = [&](const std::string &name, int64_t, const float *d,
                    int64_t rows, int64_t cols) {
    if (name != "result_norm")
      return;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j)
        sum[static_cast<size_t>(j)] += d[r * cols + j];
    }
  };
  auto ctx = Context::Create(*model_, co);
  ASSERT_THAT(ctx, IsOk());
  ASSERT_THAT((*ctx)->Eval(longer, LogitsRequest::All()), IsOk());
  double ns = 0;
  for (double x : sum)
    ns += x * x;
  for (size_t j = 0; j < sum.size(); ++j) {
    EXPECT_NEAR((*el)[j], sum[j] / std::sqrt(ns), 1e-4) << "element " << j;
  }
  EXPECT_THAT(engine->Embed({}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      engine->Embed(std::vector<int32_t>{5, 1 << 20}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tokens[1]")));
}

} // namespace
} // namespace anvil::server
