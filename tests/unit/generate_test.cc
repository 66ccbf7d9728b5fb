// The generation loop on the real model: stop strings cut the text exactly where a greedy run
// shows them, streaming never shows a partial stop string, max_tokens and cancellation, context
// errors, and the chat template path end to end.
#include "model/generate.h"

#include <cmath>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/llama_model.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

class GenerateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto m = LlamaModel::Load(testing::Q41ModelPath());
    ASSERT_THAT(m, IsOk());
    model_ = std::move(m).value().release();
  }
  static void TearDownTestSuite() { delete model_; }

  std::unique_ptr<Context> NewContext(int64_t n_ctx = 512) {
    ContextOptions o;
    o.n_ctx = n_ctx;
    auto c = Context::Create(*model_, o);
    EXPECT_THAT(c, IsOk());
    return std::move(c).value();
  }
  std::vector<int32_t> Chat(const std::string& question) {
    auto text = model_->chat_template()->Render({{"user", question}}, true);
    EXPECT_THAT(text, IsOk());
    return model_->tokenizer().Encode(*text, true, true);
  }
  static LlamaModel* model_;
};
LlamaModel* GenerateTest::model_ = nullptr;

GenerateOptions Greedy(int max_tokens) {
  GenerateOptions g;
  g.max_tokens = max_tokens;
  g.sampling.temperature = 0;
  return g;
}

TEST_F(GenerateTest, ChatAnswerEndsAtEndOfTurn) {
  ASSERT_TRUE(model_->chat_template().has_value());
  auto ctx = NewContext();
  auto r = Generate(*ctx, Chat("What is the tallest mountain in the world?"), Greedy(96));
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->finish, FinishReason::kEndOfGeneration);
  EXPECT_THAT(r->text, HasSubstr("Mount Everest"));
}

TEST_F(GenerateTest, StopStringCutsWhereGreedyTextHasIt) {
  auto ctx = NewContext();
  const auto prompt = model_->tokenizer().Encode("The capital of France is", true, true);
  auto free_run = Generate(*ctx, prompt, Greedy(40));
  ASSERT_THAT(free_run, IsOk());
  ASSERT_GE(free_run->text.size(), 20u) << free_run->text;
  // Pick a stop string from the middle of the free-running text.
  const std::string stop = free_run->text.substr(10, 4);
  const size_t first = free_run->text.find(stop);

  GenerateOptions g = Greedy(40);
  g.stop = {stop};
  std::string streamed;
  ctx->Reset();
  auto r = Generate(*ctx, prompt, g, [&](std::string_view piece) {
    streamed += piece;
    EXPECT_EQ(streamed.find(stop), std::string::npos) << "a stop string was streamed";
    return true;
  });
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->finish, FinishReason::kStop);
  EXPECT_EQ(r->text, free_run->text.substr(0, first));
  EXPECT_EQ(streamed, r->text);
}

TEST_F(GenerateTest, MaxTokensAndCancellation) {
  auto ctx = NewContext();
  const auto prompt = model_->tokenizer().Encode("Once upon a time", true, true);
  GenerateOptions g = Greedy(5);
  g.stop_at_eog = false;
  auto r = Generate(*ctx, prompt, g);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->tokens.size(), 5u);
  EXPECT_EQ(r->finish, FinishReason::kLength);
  EXPECT_EQ(ctx->n_past(), static_cast<int64_t>(prompt.size()) + 4);

  ctx->Reset();
  int calls = 0;
  auto c = Generate(*ctx, prompt, Greedy(50), [&](std::string_view) { return ++calls < 2; });
  ASSERT_THAT(c, IsOk());
  EXPECT_EQ(c->finish, FinishReason::kCancelled);
  EXPECT_EQ(calls, 2);
}

TEST_F(GenerateTest, SeededSamplingIsReproducible) {
  auto ctx = NewContext();
  const auto prompt = Chat("Tell me a short story.");
  GenerateOptions g;
  g.max_tokens = 24;
  g.sampling.temperature = 1.0f;
  g.sampling.seed = 1234;
  auto a = Generate(*ctx, prompt, g);
  ctx->Reset();
  auto b = Generate(*ctx, prompt, g);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->tokens, b->tokens);
}

TEST_F(GenerateTest, ContextErrors) {
  auto ctx = NewContext(16);
  const std::vector<int32_t> long_prompt(17, 100);
  EXPECT_THAT(ctx->Eval(long_prompt), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(ctx->n_past(), 0);
  const std::vector<int32_t> bad = {1, 49152};
  EXPECT_THAT(ctx->Eval(bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token id 49152")));
  EXPECT_THAT(Generate(*ctx, {}, Greedy(1)), StatusIs(absl::StatusCode::kInvalidArgument));
  GenerateOptions g = Greedy(1);
  g.stop = {""};
  EXPECT_THAT(Generate(*ctx, std::vector<int32_t>{1}, g),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty stop")));
}

TEST(KvCacheTest, CachedPrefixGivesSameLogitsAsFullPrefill) {
  // Eval in two pieces == one Eval: the KV cache carries the prefix. On the F32 model, where
  // no activation is quantized, only the summation order (which follows the batch size, as in
  // llama.cpp) may differ.
  auto m = LlamaModel::Load(testing::F32ModelPath());
  ASSERT_THAT(m, IsOk());
  const auto prompt = (*m)->tokenizer().Encode(
      "<|im_start|>user\nName three colors.<|im_end|>\n<|im_start|>assistant\n", true, true);
  ContextOptions o;
  o.n_ctx = 128;
  auto a = Context::Create(**m, o);
  auto b = Context::Create(**m, o);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  ASSERT_THAT((*a)->Eval(prompt), IsOk());
  const size_t half = prompt.size() / 2;
  ASSERT_THAT((*b)->Eval(absl::MakeConstSpan(prompt).first(half)), IsOk());
  ASSERT_THAT((*b)->Eval(absl::MakeConstSpan(prompt).subspan(half)), IsOk());
  EXPECT_EQ((*b)->n_past(), static_cast<int64_t>(prompt.size()));
  double worst = 0;
  for (int64_t i = 0; i < (*a)->n_vocab(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs((*a)->logits(0)[i] - (*b)->logits(0)[i])));
  }
  EXPECT_LE(worst, 1e-3);
}

TEST(Utf8Test, CompletePrefix) {
  EXPECT_EQ(CompleteUtf8Prefix("abc"), 3u);
  EXPECT_EQ(CompleteUtf8Prefix("a\xC3"), 1u);              // first byte of é
  EXPECT_EQ(CompleteUtf8Prefix("a\xC3\xA9"), 3u);          // é complete
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\x98"), 0u);       // 3 of 4 bytes of 😀
  EXPECT_EQ(CompleteUtf8Prefix("\xF0\x9F\x98\x80"), 4u);
  EXPECT_EQ(CompleteUtf8Prefix(""), 0u);
}

}  // namespace
}  // namespace anvil
