// BLEU as sacrebleu 2.4.3 computes it: sentence_bleu (exp smoothing, effective order) and
// corpus_bleu (exp smoothing, no effective order), both with the 13a tokenizer
// (tokenizer_13a.h), case kept, n-grams up to 4. Scores are on sacrebleu's 0-100 scale.
#ifndef ANVIL_EVAL_BLEU_H_
#define ANVIL_EVAL_BLEU_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace anvil::eval {

enum class BleuSmoothing {
  kNone,   // zero precision stays zero
  kFloor,  // a zero count becomes smooth_value (default 0.1)
  kAddK,   // orders >= 2 add smooth_value (default 1) to matched and total counts
  kExp,    // the k-th zero-count order gets 1 / (2^k · total) (NIST / mteval-v13a)
};

struct BleuOptions {
  BleuSmoothing smoothing = BleuSmoothing::kExp;
  double smooth_value = -1.0;   // < 0: the method's default (floor 0.1, add-k 1)
  bool effective_order = true;  // average only the orders that have n-grams (sentence BLEU)
  int max_ngram_order = 4;
};

// sacrebleu.corpus_bleu's defaults: exp smoothing without effective order.
inline BleuOptions CorpusBleuOptions() {
  BleuOptions options;
  options.effective_order = false;
  return options;
}

struct BleuScore {
  double score = 0.0;              // 0-100
  std::vector<double> counts;      // matched n-grams per order (add-k makes these fractional)
  std::vector<double> totals;      // hypothesis n-grams per order
  std::vector<double> precisions;  // 0-100 per order
  double brevity_penalty = 0.0;
  int64_t sys_len = 0;  // hypothesis tokens
  int64_t ref_len = 0;  // closest reference lengths (shorter one on ties)
};

// Sufficient statistics of one segment: {sys_len, ref_len, matched[order], total[order]}, with
// reference n-gram counts clipped at the maximum over `references`.
std::vector<int64_t> BleuStatistics(absl::string_view hypothesis,
                                    absl::Span<const std::string> references,
                                    int max_ngram_order = 4);

// BLEU from (summed) statistics laid out as BleuStatistics returns them for
// options.max_ngram_order (2 + 2 * max_ngram_order values), as sacrebleu's BLEU.compute_bleu.
BleuScore BleuFromStatistics(absl::Span<const int64_t> statistics, const BleuOptions& options);

// sacrebleu.sentence_bleu(hypothesis, references). No references is InvalidArgument.
absl::StatusOr<BleuScore> SentenceBleu(absl::string_view hypothesis,
                                       absl::Span<const std::string> references,
                                       const BleuOptions& options = {});
BleuScore SentenceBleu(absl::string_view hypothesis, absl::string_view reference,
                       const BleuOptions& options = {});

// sacrebleu.corpus_bleu(hypotheses, refs) where references[i] holds the references of
// hypotheses[i] (sacrebleu takes them transposed, one stream per reference). Sizes must agree and
// no list may be empty.
absl::StatusOr<BleuScore> CorpusBleu(absl::Span<const std::string> hypotheses,
                                     absl::Span<const std::vector<std::string>> references,
                                     const BleuOptions& options = CorpusBleuOptions());

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_BLEU_H_
