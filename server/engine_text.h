// Incremental output text of one request, with the same rules as anvil::Generate: each token's
// piece is appended; a completed stop string cuts the text there (and ends the request); bytes
// that may start a stop string or complete a UTF-8 character are held back until they cannot.
#ifndef ANVIL_SERVER_ENGINE_TEXT_H_
#define ANVIL_SERVER_ENGINE_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "model/generate.h"

namespace anvil::server {

class TextReleaser {
 public:
  explicit TextReleaser(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends `piece`; returns the newly released text. *stopped is set when a stop string
  // completed: the text is then cut before it and everything up to the cut is released.
  std::string Add(std::string_view piece, bool* stopped);
  // Releases everything still held (the request ends without a stop string).
  std::string Flush();

  const std::string& text() const { return text_; }  // all text so far, held bytes included
  std::string_view released() const { return std::string_view(text_).substr(0, released_); }

 private:
  std::string Release(size_t upto);

  std::vector<std::string> stops_;
  std::string text_;
  size_t released_ = 0;
};

// StopPrefixHold (the bytes held back for a possible stop string) is model/generate.h's, shared
// with Generate so both stream text by the same rule.
using ::anvil::StopPrefixHold;

}  // namespace anvil::server

#endif  // ANVIL_SERVER_ENGINE_TEXT_H_
