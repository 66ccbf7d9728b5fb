// Percentile bootstrap of a mean.
#include "eval/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"

namespace anvil::eval {
namespace {

// Uniform integer in [0, n) without modulo bias (rejection of the short top range).
uint64_t UniformIndex(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;  // a multiple of n
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

// Linear-interpolation quantile of sorted values, q in [0, 1].
double Quantile(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

}  // namespace

absl::StatusOr<ConfidenceInterval> BootstrapMeanCi(absl::Span<const double> scores,
                                                   const BootstrapOptions& options) {
  if (scores.empty()) return absl::InvalidArgumentError("bootstrap: no scores");
  if (options.resamples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap: resamples must be at least 1, got ", options.resamples));
  }
  if (!(options.confidence > 0.0 && options.confidence < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bootstrap: confidence must be in (0, 1), got ", options.confidence));
  }
  double sum = 0.0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (!std::isfinite(scores[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("bootstrap: score ", i, " is ", scores[i], "; scores must be finite"));
    }
    sum += scores[i];
  }
  const double n = static_cast<double>(scores.size());
  std::mt19937_64 rng(options.seed);
  std::vector<double> means(options.resamples);
  for (double& mean : means) {
    double s = 0.0;
    for (size_t k = 0; k < scores.size(); ++k) s += scores[UniformIndex(rng, scores.size())];
    mean = s / n;
  }
  std::sort(means.begin(), means.end());
  const double alpha = 1.0 - options.confidence;
  ConfidenceInterval ci;
  ci.mean = sum / n;
  ci.low = Quantile(means, alpha / 2);
  ci.high = Quantile(means, 1.0 - alpha / 2);
  return ci;
}

}  // namespace anvil::eval
