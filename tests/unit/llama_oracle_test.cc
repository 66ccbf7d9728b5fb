// The forward pass against llama.cpp (fixtures from scripts/reference/llamacpp_golden.py):
// logits and greedy continuations on the F32 copy and on the shipped Q4_1 file, perplexity,
// and top-1 agreement over 2048 positions. Runs the CPU (AVX2) backend.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/llama_model.h"
#include "model/perplexity.h"
#include "model/sampler.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using json = nlohmann::json;
using ::anvil::testing::FixturePath;
using ::anvil::testing::IsOk;
using ::anvil::testing::ReadFileOrDie;

json Fixture(const std::string& name) { return json::parse(ReadFileOrDie(FixturePath(name))); }

std::unique_ptr<LlamaModel> LoadOrFail(const std::string& path) {
  auto m = LlamaModel::Load(path);
  EXPECT_THAT(m, IsOk()) << "run scripts/test.sh (or scripts/fetch-model.sh and "
                            "scripts/reference/llamacpp_golden.sh --make-f32-only) first";
  return m.ok() ? std::move(m).value() : nullptr;
}

std::unique_ptr<Context> NewContext(const LlamaModel& m, int64_t n_ctx) {
  ContextOptions o;
  o.n_ctx = n_ctx;
  o.n_batch = n_ctx;
  o.threads = 2;
  auto c = Context::Create(m, o);
  EXPECT_THAT(c, IsOk());
  return std::move(c).value();
}

// Greedy continuation of `n` tokens, never stopping at EOS (as the fixture was made).
std::vector<int32_t> Greedy(Context& ctx, const std::vector<int32_t>& prompt, int n) {
  ctx.Reset();
  std::vector<int32_t> out;
  EXPECT_THAT(ctx.Eval(prompt), IsOk());
  for (int i = 0; i < n; ++i) {
    int32_t id = Sampler::Argmax(ctx.logits(ctx.n_logits() - 1), ctx.n_vocab());
    out.push_back(id);
    if (i + 1 < n) {
      EXPECT_THAT(ctx.Eval({&id, 1}), IsOk());
    }
  }
  return out;
}

struct PromptReport {
  bool greedy_equal = false;
  int first_divergence = -1;
  double max_logit_diff = 0;
  bool top10_ids_equal = false;
  int32_t top1 = -1;
};

PromptReport CheckPrompt(const LlamaModel& model, Context& ctx, const json& p) {
  PromptReport r;
  const std::vector<int32_t> ids = p["prompt_ids"].get<std::vector<int32_t>>();
  // The prompt ids must also be what our tokenizer makes of the text.
  EXPECT_EQ(model.tokenizer().Encode(p["text"].get<std::string>(), true, true), ids)
      << p["name"];
  ctx.Reset();
  EXPECT_THAT(ctx.Eval(ids), IsOk());
  const float* z = ctx.logits(0);
  std::vector<int32_t> order(static_cast<size_t>(ctx.n_vocab()));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  std::partial_sort(order.begin(), order.begin() + 10, order.end(),
                    [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
  r.top1 = order[0];
  r.top10_ids_equal = true;
  for (int i = 0; i < 10; ++i) {
    const int32_t want_id = p["top10"][i][0].get<int32_t>();
    const double want_logit = p["top10"][i][1].get<double>();
    if (order[i] != want_id) r.top10_ids_equal = false;
    r.max_logit_diff = std::max(r.max_logit_diff, std::fabs(z[want_id] - want_logit));
  }
  for (auto& [id, logit] : p["logits_at"].items()) {
    r.max_logit_diff =
        std::max(r.max_logit_diff, std::fabs(z[std::stoi(id)] - logit.get<double>()));
  }
  const std::vector<int32_t> want = p["greedy32"].get<std::vector<int32_t>>();
  const std::vector<int32_t> got = Greedy(ctx, ids, static_cast<int>(want.size()));
  r.greedy_equal = got == want;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i]) {
      r.first_divergence = static_cast<int>(i);
      break;
    }
  }
  std::printf("  %-10s top10 ids %s, max |logit diff| %.2e, greedy %s (first divergence %d)\n",
              p["name"].get<std::string>().c_str(), r.top10_ids_equal ? "equal" : "DIFFER",
              r.max_logit_diff, r.greedy_equal ? "equal" : "DIFFERS", r.first_divergence);
  return r;
}

TEST(LlamaOracleTest, F32CopyMatchesLlamaCppLogitsAndGreedy) {
  auto model = LoadOrFail(testing::F32ModelPath());
  ASSERT_NE(model, nullptr);
  auto ctx = NewContext(*model, 512);
  const json fx = Fixture("llamacpp_f32.json");
  ASSERT_EQ(fx["prompts"].size(), 5u);
  for (const json& p : fx["prompts"]) {
    const PromptReport r = CheckPrompt(*model, *ctx, p);
    EXPECT_TRUE(r.top10_ids_equal) << p["name"];
    EXPECT_LE(r.max_logit_diff, 2e-3) << p["name"];
    EXPECT_TRUE(r.greedy_equal) << p["name"] << " diverges at " << r.first_divergence;
  }
}

TEST(LlamaOracleTest, Q41GreedyMatchesLlamaCppOnAtLeastFourOfFive) {
  auto model = LoadOrFail(testing::Q41ModelPath());
  ASSERT_NE(model, nullptr);
  auto ctx = NewContext(*model, 512);
  const json fx = Fixture("llamacpp_q4_1.json");
  ASSERT_EQ(fx["prompts"].size(), 5u);
  int equal = 0;
  for (const json& p : fx["prompts"]) {
    const PromptReport r = CheckPrompt(*model, *ctx, p);
    equal += r.greedy_equal ? 1 : 0;
    // The kernels reproduce llama.cpp's numerics (docs/CORRECTNESS.md), so even with 8-bit
    // activations the logits agree to the fixture's printing precision; 1e-3 leaves room only
    // for a rare flipped rounding, which would already move logits by ~0.1.
    EXPECT_EQ(r.top1, p["top10"][0][0].get<int32_t>()) << p["name"];
    EXPECT_LE(r.max_logit_diff, 1e-3) << p["name"];
  }
  std::printf("Q4_1 greedy continuations identical to llama.cpp: %d of 5\n", equal);
  EXPECT_GE(equal, 4);
}

// The Q8_0 and F16 copies: every weight matrix in one type, so these pin the Q8_0 and F16
// matmul paths (and GetRows for the embedding) to llama.cpp's results on the real model.
// Q8_0 follows llama.cpp's integer dot order and agrees to the fixture's printing precision.
// F16 does not reproduce llama.cpp's F16 summation order (our F16 kernels are checked against
// the reference with a tolerance), so it is held to the same greedy text and top-1, with logits
// within 5e-2 (measured: 3.4e-2 worst, on logits of magnitude ~30).
void CheckCopy(const std::string& path, const std::string& fixture, bool exact_order,
               double max_diff) {
  auto model = LoadOrFail(path);
  ASSERT_NE(model, nullptr);
  auto ctx = NewContext(*model, 512);
  const json fx = Fixture(fixture);
  ASSERT_EQ(fx["prompts"].size(), 5u);
  for (const json& p : fx["prompts"]) {
    const PromptReport r = CheckPrompt(*model, *ctx, p);
    if (exact_order) EXPECT_TRUE(r.top10_ids_equal) << p["name"];
    EXPECT_EQ(r.top1, p["top10"][0][0].get<int32_t>()) << p["name"];
    EXPECT_LE(r.max_logit_diff, max_diff) << p["name"];
    EXPECT_TRUE(r.greedy_equal) << p["name"] << " diverges at " << r.first_divergence;
  }
}

TEST(LlamaOracleTest, Q80CopyMatchesLlamaCppLogitsAndGreedy) {
  CheckCopy(testing::Q80ModelPath(), "llamacpp_q8_0.json", true, 1e-3);
}

TEST(LlamaOracleTest, F16CopyMatchesLlamaCppGreedy) {
  CheckCopy(testing::F16ModelPath(), "llamacpp_f16.json", false, 5e-2);
}

std::vector<int32_t> GplTokens(const LlamaModel& model, const json& fx) {
  const std::string text = ReadFileOrDie(fx["text_file"].get<std::string>());
  std::vector<int32_t> ids = model.tokenizer().Encode(text, true, false);
  EXPECT_EQ(static_cast<int64_t>(ids.size()), fx["n_tokens"].get<int64_t>());
  const auto first = fx["first_16_ids"].get<std::vector<int32_t>>();
  EXPECT_TRUE(std::equal(first.begin(), first.end(), ids.begin()));
  return ids;
}

void CheckPerplexity(const std::string& path, const std::string& key, double rel_tol) {
  auto model = LoadOrFail(path);
  ASSERT_NE(model, nullptr);
  const json fx = Fixture("perplexity.json");
  const std::vector<int32_t> tokens = GplTokens(*model, fx);
  auto ctx = NewContext(*model, 512);
  PerplexityOptions o;
  o.n_ctx = fx["ctx"].get<int64_t>();
  o.max_chunks = fx["chunks"].get<int64_t>();
  auto r = ComputePerplexity(*ctx, tokens, o);
  ASSERT_THAT(r, IsOk());
  const json& want = fx["models"][key];
  std::printf("%s perplexity: anvil %.6f, llama.cpp %.6f (%+.4f%%)\n", key.c_str(), r->ppl,
              want["ppl"].get<double>(),
              100.0 * (r->ppl / want["ppl"].get<double>() - 1.0));
  EXPECT_EQ(r->scored_tokens, want["count"].get<int64_t>());
  EXPECT_NEAR(r->ppl, want["ppl"].get<double>(), rel_tol * want["ppl"].get<double>());
}

TEST(LlamaOracleTest, Q41PerplexityWithinHalfPercent) {
  CheckPerplexity(testing::Q41ModelPath(), "SmolLM2-135M-Instruct.Q4_1.gguf", 0.005);
}

TEST(LlamaOracleTest, F32PerplexityWithinOneTenthPercent) {
  CheckPerplexity(testing::F32ModelPath(), "SmolLM2-135M-Instruct.F32.gguf", 0.001);
}

TEST(LlamaOracleTest, Q41Top1AgreementOver2048Positions) {
  auto model = LoadOrFail(testing::Q41ModelPath());
  ASSERT_NE(model, nullptr);
  const json fx = Fixture("top1_q4_1.json");
  const auto tokens = fx["tokens"].get<std::vector<int32_t>>();
  const auto top1 = fx["top1"].get<std::vector<int32_t>>();
  const auto margin = fx["margin"].get<std::vector<double>>();
  auto ctx = NewContext(*model, 512);
  PerplexityOptions o;
  o.n_ctx = fx["ctx"].get<int64_t>();
  o.max_chunks = fx["chunks"].get<int64_t>();
  o.top1_all_positions = true;
  auto r = ComputePerplexity(*ctx, tokens, o);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(r->top1.size(), top1.size());
  int agree = 0, near_tie = 0;
  double worst_margin = 0;
  for (size_t i = 0; i < top1.size(); ++i) {
    if (r->top1[i] == top1[i]) {
      ++agree;
    } else {
      near_tie += margin[i] < 0.1 ? 1 : 0;
      worst_margin = std::max(worst_margin, margin[i]);
    }
  }
  const double rate = static_cast<double>(agree) / top1.size();
  std::printf("Q4_1 top-1 agreement with llama.cpp: %d / %zu = %.2f%% (%d of %zu disagreements "
              "are near-ties with llama.cpp margin < 0.1; largest margin %.4f)\n",
              agree, top1.size(), 100 * rate, near_tie, top1.size() - agree, worst_margin);
  EXPECT_GE(rate, 0.97);
}

}  // namespace
}  // namespace anvil
