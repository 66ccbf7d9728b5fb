// The 13a tokenizer. sacrebleu applies four regular expressions one after the other with re.sub;
// each pass below scans left to right and resumes after a match, which is re.sub's
// non-overlapping semantics. Working on UTF-8 bytes is exact: every pattern's literal characters
// are ASCII, and a continuation byte is never one of them, so a multi-byte character behaves as
// the single "other" character it is in Python.
#include "eval/tokenizer_13a.h"

#include <algorithm>

#include "absl/strings/str_replace.h"
#include "eval/unicode_text.h"

namespace anvil::eval {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// [\{-\~\[-\` -\&\(-\+\:-\@\/]: ASCII punctuation and space, minus ' , - .
bool IsSplitPunct(char c) {
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') ||
         (c >= '(' && c <= '+') || (c >= ':' && c <= '@') || c == '/';
}

// Python's str.rstrip(): drops trailing whitespace code points.
absl::string_view RstripPython(absl::string_view s) {
  const std::u32string chars = DecodeUtf8(s);
  size_t end = chars.size();
  while (end > 0 && IsPythonSpace(chars[end - 1])) --end;
  // The dropped suffix is whitespace, hence valid UTF-8 whose re-encoded length is its length.
  const size_t dropped = EncodeUtf8(std::u32string_view(chars).substr(end)).size();
  return s.substr(0, s.size() - std::min(dropped, s.size()));
}

std::string ReplaceAll(absl::string_view s, absl::string_view from, absl::string_view to) {
  return absl::StrReplaceAll(s, {{from, to}});
}

}  // namespace

std::vector<std::string> Tokenize13a(absl::string_view input) {
  std::string line = ReplaceAll(RstripPython(input), "<skipped>", "");
  line = ReplaceAll(line, "-\n", "");
  line = ReplaceAll(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    line = ReplaceAll(line, "&quot;", "\"");
    line = ReplaceAll(line, "&amp;", "&");
    line = ReplaceAll(line, "&lt;", "<");
    line = ReplaceAll(line, "&gt;", ">");
  }
  line = " " + line + " ";

  // 1. ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
  std::string a;
  for (char c : line) {
    if (IsSplitPunct(c)) {
      a += ' ';
      a += c;
      a += ' ';
    } else {
      a += c;
    }
  }
  // 2. ([^0-9])([\.,]) -> "\1 \2 "
  std::string b;
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !IsDigit(a[i]) && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b += a[i];
      b += ' ';
      b += a[i + 1];
      b += ' ';
      i += 2;
    } else {
      b += a[i++];
    }
  }
  // 3. ([\.,])([^0-9]) -> " \1 \2"
  std::string c;
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && (b[i] == '.' || b[i] == ',') && !IsDigit(b[i + 1])) {
      c += ' ';
      c += b[i];
      c += ' ';
      c += b[i + 1];
      i += 2;
    } else {
      c += b[i++];
    }
  }
  // 4. ([0-9])(-) -> "\1 \2 "
  std::string d;
  for (size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && IsDigit(c[i]) && c[i + 1] == '-') {
      d += c[i];
      d += " - ";
      i += 2;
    } else {
      d += c[i++];
    }
  }
  return SplitPythonWhitespace(d);
}

}  // namespace anvil::eval
