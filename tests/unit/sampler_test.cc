// Sampler: greedy ties, each filter of the chain from first principles, seed determinism, and
// the empirical distribution of temperature sampling against the exact softmax.
#include "model/sampler.h"

#include <cmath>
#include <map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;

TEST(SamplerTest, GreedyPicksArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p);
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits.data(), 4), 1);
  EXPECT_EQ(Sampler::Argmax(logits.data(), 4), 1);
}

// Argmax is the first strict maximum of a left-to-right scan, whatever the length (the vector
// part works in chunks of 16), with ties, signed zeros and NaNs (which never win; a NaN at
// index 0 makes the answer 0).
TEST(SamplerTest, ArgmaxIsTheFirstStrictMaximumOfAScan) {
  auto scan = [](const std::vector<float>& x) {
    int32_t best = 0;
    for (size_t i = 1; i < x.size(); ++i) {
      if (x[i] > x[best]) best = static_cast<int32_t>(i);
    }
    return best;
  };
  const float nan = std::nanf("");
  std::vector<std::vector<float>> cases = {
      {1.0f}, {-0.0f, 0.0f, -0.0f}, {nan, 5.0f, 7.0f}, {1.0f, nan, 3.0f, nan, 3.0f},
      {-1.0f, -1.0f}, {-INFINITY, -INFINITY, INFINITY}};
  for (int n : {15, 16, 17, 33, 49152}) {  // ties at the top in different lanes and the tail
    std::vector<float> x(n);
    for (int i = 0; i < n; ++i) x[i] = static_cast<float>((i * 7919) % 101) * 0.25f;
    x[n - 1] = 100.0f;
    if (n > 20) x[n / 2] = 100.0f;
    cases.push_back(x);
  }
  for (const auto& x : cases) {
    EXPECT_EQ(Sampler::Argmax(x.data(), static_cast<int64_t>(x.size())), scan(x))
        << "n = " << x.size() << ", x[0] = " << x[0];
  }
}

TEST(SamplerTest, TopKOneIsGreedy) {
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  Sampler s(p);
  const std::vector<float> logits = {0.1f, 0.3f, 0.2f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits.data(), 3), 1);
}

TEST(SamplerTest, TopPKeepsSmallestSetReachingP) {
  // Probabilities of logits log(0.5), log(0.3), log(0.2): top_p 0.7 keeps {0, 1} only.
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.min_p = 0;
  p.top_p = 0.7f;
  Sampler s(p);
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  std::map<int, int> counts;
  for (int i = 0; i < 2000; ++i) counts[s.Sample(logits.data(), 3)]++;
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
}

TEST(SamplerTest, MinPDropsTokensBelowFractionOfBest) {
  // p = 0.6, 0.3, 0.1; min_p 0.4 keeps tokens with p >= 0.24: {0, 1}.
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.4f;
  Sampler s(p);
  const std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  std::map<int, int> counts;
  for (int i = 0; i < 2000; ++i) counts[s.Sample(logits.data(), 3)]++;
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[1], 0);
}

TEST(SamplerTest, RepetitionPenaltyDividesPositiveMultipliesNegative) {
  SamplingParams p;
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  // Token 0 (logit 3) seen: 3/2 = 1.5 < 2 -> token 1 wins.
  const std::vector<float> logits = {3.0f, 2.0f, -1.0f};
  s.Accept(0);
  EXPECT_EQ(s.Sample(logits.data(), 3), 1);
  // Negative logits get more negative: -0.5 * 2 = -1 < -0.8.
  Sampler s2(p);
  const std::vector<float> neg = {-0.5f, -0.8f};
  s2.Accept(0);
  EXPECT_EQ(s2.Sample(neg.data(), 2), 1);
}

TEST(SamplerTest, SameSeedSameSequenceDifferentSeedDiffers) {
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0;
  std::vector<float> logits(100);
  for (int i = 0; i < 100; ++i) logits[i] = std::sin(i * 0.7f);
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 64; ++i) out.push_back(s.Sample(logits.data(), 100));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(SamplerTest, TemperatureSamplingMatchesSoftmax) {
  // Frequencies over 40000 draws are within 0.01 of softmax(logits / T).
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0;
  Sampler s(p);
  const std::vector<float> logits = {1.0f, 0.5f, 0.0f, -0.5f};
  double z = 0;
  std::vector<double> want(4);
  for (int i = 0; i < 4; ++i) z += want[i] = std::exp(logits[i] / 0.7);
  std::vector<int> counts(4);
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[s.Sample(logits.data(), 4)]++;
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / double(n), want[i] / z, 0.01) << i;
}

TEST(SamplerTest, ValidateRejectsOutOfRange) {
  SamplingParams p;
  EXPECT_THAT(ValidateSamplingParams(p), IsOk());
  p.top_p = 1.5f;
  EXPECT_THAT(ValidateSamplingParams(p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("top_p")));
  p = {};
  p.min_p = -0.1f;
  EXPECT_THAT(ValidateSamplingParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
  p = {};
  p.repeat_penalty = 0;
  EXPECT_THAT(ValidateSamplingParams(p),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("repeat_penalty")));
  p = {};
  p.repeat_last_n = -1;
  EXPECT_THAT(ValidateSamplingParams(p), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil
