// Exact match of a prediction against one or several references after a chosen normalization.
// The normalizers are in normalize.h; aggregation over a dataset (mean, bootstrap) is the caller's.
#ifndef ANVIL_EVAL_EXACT_MATCH_H_
#define ANVIL_EVAL_EXACT_MATCH_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "eval/normalize.h"

namespace anvil::eval {

// True when Normalize(prediction) == Normalize(reference). With kJson, a side that is not valid
// JSON is InvalidArgument (the message says which side); ExactMatchJsonOrText falls back instead.
absl::StatusOr<bool> ExactMatch(absl::string_view prediction, absl::string_view reference,
                                Normalization normalization);

// 1.0 when the prediction matches any of `references`, else 0.0 (SQuAD's max over answers).
// No references is InvalidArgument.
absl::StatusOr<double> ExactMatchScore(absl::string_view prediction,
                                       absl::Span<const std::string> references,
                                       Normalization normalization);

// Compares canonical JSON when both sides parse, otherwise whitespace-normalized text, so a model
// that answers with malformed JSON scores 0 against a JSON reference rather than failing the run.
bool ExactMatchJsonOrText(absl::string_view prediction, absl::string_view reference);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_EXACT_MATCH_H_
