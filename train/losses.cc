// Cross-entropy and DPO losses; the per-row work runs on the kernels (kernels/cross_entropy.h).
#include "train/losses.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/cross_entropy.h"

namespace anvil::train {
namespace {

// -log(sigmoid(x)) = log(1 + exp(-x)), stable for both signs.
double NegLogSigmoid(double x) { return x >= 0 ? std::log1p(std::exp(-x)) : -x + std::log1p(std::exp(x)); }
double Sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / (1.0 + std::exp(x)); }

}  // namespace

absl::Status RowCrossEntropy(const ExecContext& ex, const float* logits, const int32_t* targets,
                             int64_t n, int64_t v, std::vector<float>* ce,
                             std::vector<float>* lse) {
  ce->resize(static_cast<size_t>(n));
  lse->resize(static_cast<size_t>(n));
  return CrossEntropy(ex, {logits, targets, ce->data(), lse->data(), n, v});
}

absl::Status CrossEntropyGrad(const ExecContext& ex, float* logits, const float* lse,
                              const int32_t* targets, const float* dloss, int64_t n, int64_t v) {
  return CrossEntropyBackward(ex, {logits, lse, targets, dloss, logits, n, v});
}

CeSums SumCounted(const std::vector<float>& ce, const int32_t* targets, int64_t n) {
  CeSums s;
  for (int64_t i = 0; i < n; ++i) {
    if (targets[i] < 0) continue;
    s.loss_sum += ce[static_cast<size_t>(i)];
    ++s.count;
  }
  return s;
}

std::vector<double> SequenceLogps(const std::vector<float>& ce, const std::vector<int64_t>& starts) {
  std::vector<double> out;
  for (size_t b = 0; b + 1 < starts.size(); ++b) {
    double s = 0.0;
    for (int64_t i = starts[b]; i < starts[b + 1]; ++i) s += ce[static_cast<size_t>(i)];
    out.push_back(-s);
  }
  return out;
}

absl::StatusOr<DpoStats> DpoLoss(const std::vector<double>& policy_chosen,
                                 const std::vector<double>& policy_rejected,
                                 const std::vector<double>& ref_chosen,
                                 const std::vector<double>& ref_rejected, const DpoConfig& config,
                                 int64_t denom) {
  const size_t p = policy_chosen.size();
  if (policy_rejected.size() != p || ref_chosen.size() != p || ref_rejected.size() != p || p == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dpo: mismatched log-prob counts (policy ", policy_chosen.size(), "/",
        policy_rejected.size(), ", reference ", ref_chosen.size(), "/", ref_rejected.size(), ")"));
  }
  if (denom < 1) return absl::InvalidArgumentError("dpo: denominator must be >= 1");
  DpoStats s;
  s.d_logp_chosen.resize(p);
  s.d_logp_rejected.resize(p);
  const double beta = config.beta;
  for (size_t i = 0; i < p; ++i) {
    const double rc = beta * (policy_chosen[i] - ref_chosen[i]);
    const double rr = beta * (policy_rejected[i] - ref_rejected[i]);
    const double delta = (policy_chosen[i] - ref_chosen[i]) - (policy_rejected[i] - ref_rejected[i]);
    s.loss += NegLogSigmoid(beta * delta);
    // dL/ddelta = -beta * sigmoid(-beta * delta), averaged over denom pairs.
    const double g = -beta * Sigmoid(-beta * delta) / static_cast<double>(denom);
    s.d_logp_chosen[i] = g;
    s.d_logp_rejected[i] = -g;
    s.rewards_chosen += rc;
    s.rewards_rejected += rr;
    s.reward_accuracy += rc > rr ? 1.0 : 0.0;
    s.reward_margin += rc - rr;
    s.logps_chosen += policy_chosen[i];
    s.logps_rejected += policy_rejected[i];
  }
  const double inv = 1.0 / static_cast<double>(p);
  s.loss *= inv;
  s.rewards_chosen *= inv;
  s.rewards_rejected *= inv;
  s.reward_accuracy *= inv;
  s.reward_margin *= inv;
  s.logps_chosen *= inv;
  s.logps_rejected *= inv;
  return s;
}

}  // namespace anvil::train
