// Exact match: normalize both sides, compare the bytes.
#include "eval/exact_match.h"

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"

namespace anvil::eval {

absl::StatusOr<bool> ExactMatch(absl::string_view prediction, absl::string_view reference,
                                Normalization normalization) {
  absl::StatusOr<std::string> pred = Normalize(prediction, normalization);
  if (!pred.ok()) {
    return absl::Status(pred.status().code(),
                        absl::StrCat("prediction: ", pred.status().message()));
  }
  absl::StatusOr<std::string> ref = Normalize(reference, normalization);
  if (!ref.ok()) {
    return absl::Status(ref.status().code(), absl::StrCat("reference: ", ref.status().message()));
  }
  return *pred == *ref;
}

absl::StatusOr<double> ExactMatchScore(absl::string_view prediction,
                                       absl::Span<const std::string> references,
                                       Normalization normalization) {
  if (references.empty()) {
    return absl::InvalidArgumentError("exact match needs at least one reference");
  }
  for (const std::string& reference : references) {
    ANVIL_ASSIGN_OR_RETURN(bool match, ExactMatch(prediction, reference, normalization));
    if (match) return 1.0;
  }
  return 0.0;
}

bool ExactMatchJsonOrText(absl::string_view prediction, absl::string_view reference) {
  absl::StatusOr<bool> json = ExactMatch(prediction, reference, Normalization::kJson);
  if (json.ok()) return *json;
  return NormalizeWhitespace(prediction) == NormalizeWhitespace(reference);
}

}  // namespace anvil::eval
