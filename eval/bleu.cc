// BLEU: 13a tokens, clipped n-gram matches, brevity penalty, smoothed geometric mean.
#include "eval/bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "eval/tokenizer_13a.h"

namespace anvil::eval {
namespace {

// n-grams are keyed by their tokens joined with '\n', which no 13a token contains.
using NgramCounts = absl::flat_hash_map<std::string, int64_t>;

NgramCounts WordNgrams(const std::vector<std::string>& tokens, int max_order) {
  NgramCounts counts;
  for (int n = 1; n <= max_order; ++n) {
    for (size_t i = 0; i + n <= tokens.size(); ++i) {
      ++counts[absl::StrJoin(tokens.begin() + i, tokens.begin() + i + n, "\n")];
    }
  }
  return counts;
}

int NgramOrder(const std::string& key) {
  return 1 + static_cast<int>(std::count(key.begin(), key.end(), '\n'));
}

// sacrebleu's my_log: log, with log(0) floored to -9999999999.
double FlooredLog(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

}  // namespace

std::vector<int64_t> BleuStatistics(absl::string_view hypothesis,
                                    absl::Span<const std::string> references, int max_ngram_order) {
  NgramCounts ref_ngrams;
  std::vector<int64_t> ref_lens;
  for (const std::string& reference : references) {
    const std::vector<std::string> tokens = Tokenize13a(reference);
    ref_lens.push_back(static_cast<int64_t>(tokens.size()));
    for (const auto& [ngram, count] : WordNgrams(tokens, max_ngram_order)) {
      int64_t& kept = ref_ngrams[ngram];
      kept = std::max(kept, count);
    }
  }
  const std::vector<std::string> hyp_tokens = Tokenize13a(hypothesis);
  const int64_t hyp_len = static_cast<int64_t>(hyp_tokens.size());
  // The closest reference length; the shorter one on ties.
  int64_t closest_diff = -1, ref_len = -1;
  for (int64_t len : ref_lens) {
    const int64_t diff = std::llabs(hyp_len - len);
    if (closest_diff == -1 || diff < closest_diff) {
      closest_diff = diff;
      ref_len = len;
    } else if (diff == closest_diff && len < ref_len) {
      ref_len = len;
    }
  }
  std::vector<int64_t> stats(2 + 2 * max_ngram_order, 0);
  stats[0] = hyp_len;
  stats[1] = ref_len;
  for (const auto& [ngram, count] : WordNgrams(hyp_tokens, max_ngram_order)) {
    const int n = NgramOrder(ngram) - 1;
    stats[2 + max_ngram_order + n] += count;
    auto it = ref_ngrams.find(ngram);
    if (it != ref_ngrams.end()) stats[2 + n] += std::min(count, it->second);
  }
  return stats;
}

BleuScore BleuFromStatistics(absl::Span<const int64_t> statistics, const BleuOptions& options) {
  const int order = options.max_ngram_order;
  BleuScore result;
  result.sys_len = statistics[0];
  result.ref_len = statistics[1];
  result.counts.assign(statistics.begin() + 2, statistics.begin() + 2 + order);
  result.totals.assign(statistics.begin() + 2 + order, statistics.begin() + 2 + 2 * order);
  result.precisions.assign(order, 0.0);
  double smooth_value = options.smooth_value;
  if (smooth_value < 0) smooth_value = options.smoothing == BleuSmoothing::kAddK ? 1.0 : 0.1;

  if (result.sys_len < result.ref_len) {
    result.brevity_penalty =
        result.sys_len > 0 ? std::exp(1.0 - static_cast<double>(result.ref_len) / result.sys_len)
                           : 0.0;
  } else {
    result.brevity_penalty = 1.0;
  }
  bool any_match = false;
  for (double c : result.counts) any_match = any_match || c != 0.0;
  if (!any_match) return result;

  double smooth_mteval = 1.0;
  int eff_order = order;
  for (int n = 1; n <= order; ++n) {
    double& correct = result.counts[n - 1];
    double& total = result.totals[n - 1];
    if (options.smoothing == BleuSmoothing::kAddK && n > 1) {
      correct += smooth_value;
      total += smooth_value;
    }
    // Orders past the hypothesis length have no n-grams: stop (their precision stays 0, which
    // zeroes the score unless effective_order drops them from the mean).
    if (total == 0.0) break;
    if (options.effective_order) eff_order = n;
    if (correct == 0.0) {
      if (options.smoothing == BleuSmoothing::kExp) {
        smooth_mteval *= 2;
        result.precisions[n - 1] = 100.0 / (smooth_mteval * total);
      } else if (options.smoothing == BleuSmoothing::kFloor) {
        result.precisions[n - 1] = 100.0 * smooth_value / total;
      }
    } else {
      result.precisions[n - 1] = 100.0 * correct / total;
    }
  }
  double log_sum = 0.0;
  for (int n = 0; n < eff_order; ++n) log_sum += FlooredLog(result.precisions[n]);
  result.score = result.brevity_penalty * std::exp(log_sum / eff_order);
  return result;
}

absl::StatusOr<BleuScore> SentenceBleu(absl::string_view hypothesis,
                                       absl::Span<const std::string> references,
                                       const BleuOptions& options) {
  if (references.empty()) return absl::InvalidArgumentError("BLEU needs at least one reference");
  return BleuFromStatistics(BleuStatistics(hypothesis, references, options.max_ngram_order),
                            options);
}

BleuScore SentenceBleu(absl::string_view hypothesis, absl::string_view reference,
                       const BleuOptions& options) {
  const std::string ref(reference);
  return BleuFromStatistics(
      BleuStatistics(hypothesis, absl::MakeConstSpan(&ref, 1), options.max_ngram_order), options);
}

absl::StatusOr<BleuScore> CorpusBleu(absl::Span<const std::string> hypotheses,
                                     absl::Span<const std::vector<std::string>> references,
                                     const BleuOptions& options) {
  if (hypotheses.size() != references.size()) {
    return absl::InvalidArgumentError(absl::StrCat("corpus BLEU: ", hypotheses.size(),
                                                   " hypotheses but ", references.size(),
                                                   " reference lists; give one list each"));
  }
  std::vector<int64_t> total(2 + 2 * options.max_ngram_order, 0);
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    if (references[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("corpus BLEU: hypothesis ", i, " has no reference"));
    }
    const std::vector<int64_t> stats =
        BleuStatistics(hypotheses[i], references[i], options.max_ngram_order);
    for (size_t k = 0; k < total.size(); ++k) total[k] += stats[k];
  }
  return BleuFromStatistics(total, options);
}

}  // namespace anvil::eval
