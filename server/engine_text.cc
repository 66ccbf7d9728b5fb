#include "server/engine_text.h"

#include <algorithm>

#include "model/generate.h"

namespace anvil::server {

size_t StopPrefixHold(std::string_view text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops) {
    for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n) {
      if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

std::string TextReleaser::Release(size_t upto) {
  if (upto <= released_) return {};
  std::string out = text_.substr(released_, upto - released_);
  released_ = upto;
  return out;
}

std::string TextReleaser::Add(std::string_view piece, bool* stopped) {
  *stopped = false;
  text_.append(piece);
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t from = released_ > s.size() ? released_ - s.size() : 0;
    const size_t at = text_.find(s, from);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    text_.resize(cut);
    *stopped = true;
    return Release(text_.size());
  }
  const size_t safe = CompleteUtf8Prefix(text_);
  const size_t hold = StopPrefixHold(std::string_view(text_).substr(0, safe), stops_);
  return Release(safe - hold);
}

std::string TextReleaser::Flush() { return Release(text_.size()); }

}  // namespace anvil::server
