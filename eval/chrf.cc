// chrF: character n-gram counts over whitespace-free code points, matched as multisets.
#include "eval/chrf.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "eval/unicode_text.h"

namespace anvil::eval {
namespace {

using NgramCounts = absl::flat_hash_map<std::u32string, int64_t>;

// counts[n - 1]: the character n-grams of `text` (whitespace removed), n = 1..order.
std::vector<NgramCounts> CharNgrams(absl::string_view text, int order) {
  const std::u32string chars = RemovePythonWhitespace(text);
  std::vector<NgramCounts> counts(order);
  for (int n = 1; n <= order; ++n) {
    for (size_t i = 0; i + n <= chars.size(); ++i) ++counts[n - 1][chars.substr(i, n)];
  }
  return counts;
}

std::vector<int64_t> MatchStatistics(const std::vector<NgramCounts>& hyp,
                                     const std::vector<NgramCounts>& ref) {
  std::vector<int64_t> stats;
  stats.reserve(3 * hyp.size());
  for (size_t n = 0; n < hyp.size(); ++n) {
    int64_t hyp_total = 0, ref_total = 0, matched = 0;
    for (const auto& [ngram, count] : hyp[n]) {
      hyp_total += count;
      auto it = ref[n].find(ngram);
      if (it != ref[n].end()) matched += std::min(count, it->second);
    }
    for (const auto& [ngram, count] : ref[n]) ref_total += count;
    stats.push_back(ref[n].empty() ? 0 : hyp_total);
    stats.push_back(ref_total);
    stats.push_back(matched);
  }
  return stats;
}

// The statistics of the reference with the highest F-score (strictly higher replaces).
std::vector<int64_t> BestStatistics(absl::string_view hypothesis,
                                    absl::Span<const std::string> references,
                                    const ChrfOptions& options) {
  const std::vector<NgramCounts> hyp = CharNgrams(hypothesis, options.char_order);
  std::vector<int64_t> best;
  double best_f = -1.0;
  for (const std::string& reference : references) {
    std::vector<int64_t> stats = MatchStatistics(hyp, CharNgrams(reference, options.char_order));
    const double f = ChrfFromStatistics(stats, options);
    if (f > best_f) {
      best_f = f;
      best = std::move(stats);
    }
  }
  return best;
}

}  // namespace

std::vector<int64_t> ChrfStatistics(absl::string_view hypothesis, absl::string_view reference,
                                    const ChrfOptions& options) {
  return MatchStatistics(CharNgrams(hypothesis, options.char_order),
                         CharNgrams(reference, options.char_order));
}

double ChrfFromStatistics(absl::Span<const int64_t> statistics, const ChrfOptions& options) {
  const double factor = static_cast<double>(options.beta) * options.beta;
  double avg_prec = 0.0, avg_rec = 0.0;
  int effective_order = 0;
  for (int n = 0; n < options.char_order && 3 * n + 2 < static_cast<int>(statistics.size()); ++n) {
    const int64_t n_hyp = statistics[3 * n], n_ref = statistics[3 * n + 1];
    const double n_match = static_cast<double>(statistics[3 * n + 2]);
    if (n_hyp > 0 && n_ref > 0) {
      avg_prec += n_match / static_cast<double>(n_hyp);
      avg_rec += n_match / static_cast<double>(n_ref);
      ++effective_order;
    }
  }
  if (effective_order == 0) return 0.0;
  avg_prec /= effective_order;
  avg_rec /= effective_order;
  if (avg_prec + avg_rec == 0.0) return 0.0;
  double score = (1 + factor) * avg_prec * avg_rec;
  score /= factor * avg_prec + avg_rec;
  return 100 * score;
}

absl::StatusOr<double> SentenceChrf(absl::string_view hypothesis,
                                    absl::Span<const std::string> references,
                                    const ChrfOptions& options) {
  if (references.empty()) return absl::InvalidArgumentError("chrF needs at least one reference");
  return ChrfFromStatistics(BestStatistics(hypothesis, references, options), options);
}

double SentenceChrf(absl::string_view hypothesis, absl::string_view reference,
                    const ChrfOptions& options) {
  return ChrfFromStatistics(ChrfStatistics(hypothesis, reference, options), options);
}

absl::StatusOr<double> CorpusChrf(absl::Span<const std::string> hypotheses,
                                  absl::Span<const std::vector<std::string>> references,
                                  const ChrfOptions& options) {
  if (hypotheses.size() != references.size()) {
    return absl::InvalidArgumentError(absl::StrCat("corpus chrF: ", hypotheses.size(),
                                                   " hypotheses but ", references.size(),
                                                   " reference lists; give one list each"));
  }
  std::vector<int64_t> total(3 * options.char_order, 0);
  for (size_t i = 0; i < hypotheses.size(); ++i) {
    if (references[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("corpus chrF: hypothesis ", i, " has no reference"));
    }
    const std::vector<int64_t> stats = BestStatistics(hypotheses[i], references[i], options);
    for (size_t k = 0; k < total.size(); ++k) total[k] += stats[k];
  }
  return ChrfFromStatistics(total, options);
}

}  // namespace anvil::eval
