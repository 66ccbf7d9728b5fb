// Percentile-bootstrap confidence interval of the mean of per-example scores. Deterministic: the
// resampling indices come from a seeded std::mt19937_64 (whose output the C++ standard fixes) and
// an unbiased bounded draw of our own, so one seed gives one interval on every platform.
#ifndef ANVIL_EVAL_BOOTSTRAP_H_
#define ANVIL_EVAL_BOOTSTRAP_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace anvil::eval {

struct BootstrapOptions {
  int resamples = 1000;      // number of resampled means
  double confidence = 0.95;  // two-sided level, in (0, 1)
  uint64_t seed = 0x5eed;
};

struct ConfidenceInterval {
  double mean = 0.0;  // mean of the scores themselves (not of the resamples)
  double low = 0.0;   // (1 - confidence)/2 quantile of the resampled means
  double high = 0.0;  // (1 + confidence)/2 quantile of the resampled means
};

// Draws `resamples` samples of size n with replacement, takes each one's mean, and returns the
// quantiles of those means, linearly interpolated between order statistics (numpy.percentile's
// default). InvalidArgument for no scores, resamples < 1, a confidence outside (0, 1) or a
// non-finite score.
absl::StatusOr<ConfidenceInterval> BootstrapMeanCi(absl::Span<const double> scores,
                                                   const BootstrapOptions& options = {});

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_BOOTSTRAP_H_
