// Token-level F1 as SQuAD defines it: the bag (multiset) overlap of whitespace tokens after
// NormalizeSquad. Exact match is in exact_match.h.
#ifndef ANVIL_EVAL_TOKEN_F1_H_
#define ANVIL_EVAL_TOKEN_F1_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace anvil::eval {

struct TokenF1Result {
  double precision = 0.0;  // common / prediction tokens
  double recall = 0.0;     // common / reference tokens
  double f1 = 0.0;
};

// SQuAD v2.0 evaluate script's compute_f1: when either side normalizes to no tokens the result is
// 1 if both do, else 0 (v1.1 gave 0 for both-empty); otherwise P/R/F1 of the multiset overlap.
TokenF1Result TokenF1(absl::string_view prediction, absl::string_view reference);

// max over `references` of TokenF1(...).f1, as SQuAD scores several gold answers.
// No references is InvalidArgument.
absl::StatusOr<double> TokenF1Score(absl::string_view prediction,
                                    absl::Span<const std::string> references);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_TOKEN_F1_H_
