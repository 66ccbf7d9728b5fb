// ROUGE-L: rouge-score's tokenizer and an LCS over tokens.
#include "eval/rouge.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "eval/unicode_text.h"

namespace anvil::eval {

std::vector<std::string> RougeTokenize(absl::string_view text) {
  std::vector<std::string> tokens;
  std::string current;
  const auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (char32_t c : DecodeUtf8(text)) {
    if (c < 0x80 && absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      current.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    } else if (c == 0x0130) {  // "İ".lower() == "i\u0307": a token character, then a separator.
      current.push_back('i');
      flush();
    } else if (c == 0x212A) {  // "K".lower() == "k"
      current.push_back('k');
    } else {
      flush();
    }
  }
  flush();
  return tokens;
}

int64_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  // prev[j] / cur[j]: LCS of a[0, i) and b[0, j) for the previous and current row.
  std::vector<int64_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

RougeScore RougeL(absl::string_view prediction, absl::string_view reference) {
  const std::vector<std::string> pred = RougeTokenize(prediction);
  const std::vector<std::string> ref = RougeTokenize(reference);
  RougeScore score;
  if (pred.empty() || ref.empty()) return score;
  const double lcs = static_cast<double>(LcsLength(ref, pred));
  score.precision = lcs / static_cast<double>(pred.size());
  score.recall = lcs / static_cast<double>(ref.size());
  if (score.precision + score.recall > 0) {
    score.fmeasure = 2 * score.precision * score.recall / (score.precision + score.recall);
  }
  return score;
}

}  // namespace anvil::eval
