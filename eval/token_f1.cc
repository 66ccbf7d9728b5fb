// SQuAD token F1 over normalized whitespace tokens.
#include "eval/token_f1.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "eval/normalize.h"
#include "eval/unicode_text.h"

namespace anvil::eval {

TokenF1Result TokenF1(absl::string_view prediction, absl::string_view reference) {
  const std::vector<std::string> pred = SplitPythonWhitespace(NormalizeSquad(prediction));
  const std::vector<std::string> ref = SplitPythonWhitespace(NormalizeSquad(reference));
  TokenF1Result result;
  if (pred.empty() || ref.empty()) {
    const double both_empty = pred.empty() && ref.empty() ? 1.0 : 0.0;
    result.precision = result.recall = result.f1 = both_empty;
    return result;
  }
  absl::flat_hash_map<std::string, int> ref_counts;
  for (const std::string& t : ref) ++ref_counts[t];
  int64_t common = 0;
  for (const std::string& t : pred) {
    auto it = ref_counts.find(t);
    if (it != ref_counts.end() && it->second > 0) {
      --it->second;
      ++common;
    }
  }
  if (common == 0) return result;
  result.precision = static_cast<double>(common) / static_cast<double>(pred.size());
  result.recall = static_cast<double>(common) / static_cast<double>(ref.size());
  result.f1 = 2 * result.precision * result.recall / (result.precision + result.recall);
  return result;
}

absl::StatusOr<double> TokenF1Score(absl::string_view prediction,
                                    absl::Span<const std::string> references) {
  if (references.empty()) {
    return absl::InvalidArgumentError("token F1 needs at least one reference");
  }
  double best = 0.0;
  for (const std::string& reference : references) {
    best = std::max(best, TokenF1(prediction, reference).f1);
  }
  return best;
}

}  // namespace anvil::eval
