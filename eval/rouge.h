// ROUGE-L as Google's rouge-score package (0.1.2) computes it with
// RougeScorer(['rougeL'], use_stemmer=False): its default tokenizer, then the longest common
// subsequence of the token lists. No stemming, no rougeLsum (sentence-split summaries).
#ifndef ANVIL_EVAL_ROUGE_H_
#define ANVIL_EVAL_ROUGE_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace anvil::eval {

struct RougeScore {
  double precision = 0.0;  // LCS / prediction tokens
  double recall = 0.0;     // LCS / reference tokens
  double fmeasure = 0.0;   // 2PR / (P + R), 0 when P + R == 0
};

// rouge-score's tokenize(text, stemmer=None): Python lowercase, every character outside [a-z0-9]
// becomes a separator, split. Only ASCII letters and digits survive Python's lower() as token
// characters, with two exceptions handled here: U+0130 (İ, lowercased to "i" plus a combining
// dot, a separator) and U+212A (KELVIN SIGN, lowercased to "k"). All other non-ASCII text
// (accents, CJK, emoji) is a separator, exactly as in the reference.
std::vector<std::string> RougeTokenize(absl::string_view text);

// ROUGE-L of `prediction` against `reference` (rouge-score's score(target=reference,
// prediction=prediction)). Either side without tokens gives all zeros.
RougeScore RougeL(absl::string_view prediction, absl::string_view reference);

// Length of the longest common subsequence of two token lists; O(|a|·|b|) time, O(|b|) memory.
int64_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_ROUGE_H_
