// UTF-8 helpers shared by the metrics: decoding to code points and Python's notion of whitespace
// (str.split() with no argument), which the reference metric packages use to split text. Unicode
// properties beyond whitespace (letters, case) are left to ICU in the files that need them.
#ifndef ANVIL_EVAL_UNICODE_TEXT_H_
#define ANVIL_EVAL_UNICODE_TEXT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace anvil::eval {

// Code points of `text`. Each byte of an invalid or truncated UTF-8 sequence becomes U+FFFD, so
// the metrics never fail on bad bytes (Python would have refused to decode them at all).
std::u32string DecodeUtf8(absl::string_view text);

// UTF-8 encoding of `code_points` (surrogates and values past U+10FFFF are written as U+FFFD).
std::string EncodeUtf8(std::u32string_view code_points);

// True for the 29 code points for which Python's str.isspace() is true (ASCII \t\n\v\f\r, space,
// \x1c-\x1f, U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
bool IsPythonSpace(char32_t c);

// Python's `text.split()`: the maximal runs of non-whitespace code points, as UTF-8.
std::vector<std::string> SplitPythonWhitespace(absl::string_view text);

// Python's `''.join(text.split())`: `text` with every whitespace code point removed.
std::u32string RemovePythonWhitespace(absl::string_view text);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_UNICODE_TEXT_H_
