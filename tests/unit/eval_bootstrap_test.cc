// eval/bootstrap: the percentile interval contains the mean, narrows with more data, is fixed by
// the seed, and rejects bad input with InvalidArgument.
#include <cmath>
#include <vector>

#include "eval/bootstrap.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anvil::eval {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;

// n scores of a 0/1 metric with about 70% ones, in a fixed pattern.
std::vector<double> Scores(int n) {
  std::vector<double> s(n);
  for (int i = 0; i < n; ++i) s[i] = (i * 7) % 10 < 7 ? 1.0 : 0.0;
  return s;
}

TEST(BootstrapTest, IntervalContainsMean) {
  for (int n : {2, 10, 57, 200}) {
    absl::StatusOr<ConfidenceInterval> ci = BootstrapMeanCi(Scores(n));
    ASSERT_THAT(ci, IsOk());
    EXPECT_LE(ci->low, ci->mean) << n;
    EXPECT_GE(ci->high, ci->mean) << n;
    EXPECT_LT(ci->low, ci->high) << n;
  }
  const std::vector<double> scores = {0.2, 0.5, 0.9, 0.4};
  absl::StatusOr<ConfidenceInterval> ci = BootstrapMeanCi(scores);
  ASSERT_THAT(ci, IsOk());
  EXPECT_DOUBLE_EQ(ci->mean, 0.5);
  EXPECT_GE(ci->low, 0.2);
  EXPECT_LE(ci->high, 0.9);
}

TEST(BootstrapTest, NarrowsWithMoreData) {
  double previous_width = INFINITY;
  for (int n : {20, 200, 2000}) {
    absl::StatusOr<ConfidenceInterval> ci = BootstrapMeanCi(Scores(n));
    ASSERT_THAT(ci, IsOk());
    const double width = ci->high - ci->low;
    EXPECT_LT(width, previous_width) << n;
    previous_width = width;
  }
  // A 0/1 mean near 0.7 over 2000 examples: the 95% half-width is about 1.96·sqrt(.21/2000).
  EXPECT_NEAR(previous_width, 2 * 1.96 * std::sqrt(0.21 / 2000), 0.01);
}

TEST(BootstrapTest, SameSeedSameIntervalOtherSeedOther) {
  const std::vector<double> scores = Scores(100);
  BootstrapOptions options;
  options.seed = 42;
  absl::StatusOr<ConfidenceInterval> a = BootstrapMeanCi(scores, options);
  absl::StatusOr<ConfidenceInterval> b = BootstrapMeanCi(scores, options);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(a->low, b->low);
  EXPECT_EQ(a->high, b->high);
  options.seed = 43;
  absl::StatusOr<ConfidenceInterval> c = BootstrapMeanCi(scores, options);
  ASSERT_THAT(c, IsOk());
  EXPECT_TRUE(c->low != a->low || c->high != a->high);
}

TEST(BootstrapTest, ConstantScoresAndOneExampleGiveAPoint) {
  const std::vector<double> same(50, 0.25);
  absl::StatusOr<ConfidenceInterval> ci = BootstrapMeanCi(same);
  ASSERT_THAT(ci, IsOk());
  EXPECT_DOUBLE_EQ(ci->low, 0.25);
  EXPECT_DOUBLE_EQ(ci->high, 0.25);
  ci = BootstrapMeanCi(std::vector<double>{3.0});
  ASSERT_THAT(ci, IsOk());
  EXPECT_EQ(ci->mean, 3.0);
  EXPECT_EQ(ci->low, 3.0);
  EXPECT_EQ(ci->high, 3.0);
}

TEST(BootstrapTest, BadInputIsInvalidArgument) {
  EXPECT_THAT(BootstrapMeanCi({}), StatusIs(absl::StatusCode::kInvalidArgument));
  BootstrapOptions options;
  options.resamples = 0;
  EXPECT_THAT(BootstrapMeanCi(Scores(5), options), StatusIs(absl::StatusCode::kInvalidArgument));
  options = BootstrapOptions();
  options.confidence = 1.0;
  EXPECT_THAT(BootstrapMeanCi(Scores(5), options), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(BootstrapMeanCi(std::vector<double>{1.0, NAN}),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil::eval
