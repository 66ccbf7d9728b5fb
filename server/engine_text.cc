#include "server/engine_text.h"

#include <algorithm>

#include "model/generate.h"

namespace anvil::server {

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
