// Field-level precision, recall and F1 of a JSON answer against a JSON reference: for each key,
// the set of values the prediction gives is compared with the reference's set (a list contributes
// its elements, any other value itself; values compare as canonical JSON), and the matches are
// summed over keys. Aggregation over examples is the caller's.
#ifndef ANVIL_EVAL_FIELD_F1_H_
#define ANVIL_EVAL_FIELD_F1_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace anvil::eval {

struct FieldF1Result {
  double precision = 0.0;  // matched values / values in the prediction
  double recall = 0.0;     // matched values / values in the reference
  double f1 = 0.0;
  int64_t matched = 0, predicted = 0, expected = 0;
};

// A prediction that is not a JSON object scores 0 (predicted = 0). When a side has no values its
// ratio is 1 if the other side has none either, else 0 (an empty answer to an empty reference is
// perfect). InvalidArgument when the reference is not a JSON object.
absl::StatusOr<FieldF1Result> FieldF1(absl::string_view prediction, absl::string_view reference);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_FIELD_F1_H_
