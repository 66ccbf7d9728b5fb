// chrF (Popović 2015) as sacrebleu 2.4.3 computes it with its defaults (CHRF(): character n-grams
// up to 6, no word n-grams, beta 2, whitespace removed, case kept, effective-order averaging rather
// than epsilon smoothing). Scores are on sacrebleu's 0-100 scale.
#ifndef ANVIL_EVAL_CHRF_H_
#define ANVIL_EVAL_CHRF_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace anvil::eval {

struct ChrfOptions {
  int char_order = 6;  // n-gram orders 1..char_order, over Unicode code points
  int beta = 2;        // recall weighs beta^2 times precision
};

// Per-order sufficient statistics of one segment: {hyp n-grams, ref n-grams, matched n-grams}
// for n = 1..char_order, flattened (3 * char_order values). As in sacrebleu, the hypothesis count
// of an order is 0 when the reference has no n-gram of that order.
std::vector<int64_t> ChrfStatistics(absl::string_view hypothesis, absl::string_view reference,
                                    const ChrfOptions& options = {});

// The F-score of (summed) statistics: precision and recall are averaged over the orders where
// both the hypothesis and the reference have n-grams, then combined; 0 when no order qualifies.
double ChrfFromStatistics(absl::Span<const int64_t> statistics, const ChrfOptions& options = {});

// sacrebleu.sentence_chrf(hypothesis, references): the statistics of the best-scoring reference
// (the first one on ties). No references is InvalidArgument.
absl::StatusOr<double> SentenceChrf(absl::string_view hypothesis,
                                    absl::Span<const std::string> references,
                                    const ChrfOptions& options = {});
double SentenceChrf(absl::string_view hypothesis, absl::string_view reference,
                    const ChrfOptions& options = {});

// sacrebleu.corpus_chrf: per-segment best statistics summed over the corpus, then one F-score.
// references[i] holds the references of hypotheses[i]; sizes must agree and none may be empty.
absl::StatusOr<double> CorpusChrf(absl::Span<const std::string> hypotheses,
                                  absl::Span<const std::vector<std::string>> references,
                                  const ChrfOptions& options = {});

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_CHRF_H_
