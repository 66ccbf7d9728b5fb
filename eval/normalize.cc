// Answer normalizers. The SQuAD one follows the official evaluate-v2.0.py normalize_answer step
// by step, with ICU standing in for Python's Unicode tables.
#include "eval/normalize.h"

#include <unicode/locid.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <exception>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "eval/unicode_text.h"
#include "nlohmann/json.hpp"

namespace anvil::eval {
namespace {

// Python's string.punctuation.
bool IsAsciiPunctuation(char32_t c) {
  return c < 0x80 && absl::ascii_ispunct(static_cast<unsigned char>(c));
}

// Python's regex \w on str patterns: str.isalnum() (letters Lu/Ll/Lt/Lm/Lo or any numeric
// type) or '_'.
bool IsPythonWordChar(char32_t c) {
  if (c == '_') return true;
  if (c < 0x80) return absl::ascii_isalnum(static_cast<unsigned char>(c));
  const UChar32 u = static_cast<UChar32>(c);
  switch (u_charType(u)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return true;
    default:
      return u_getIntPropertyValue(u, UCHAR_NUMERIC_TYPE) != U_NT_NONE;
  }
}

std::string LowercaseUnicode(absl::string_view text) {
  icu::UnicodeString s = icu::UnicodeString::fromUTF8(
      icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  s.toLower(icu::Locale::getRoot());
  std::string out;
  s.toUTF8String(out);
  return out;
}

// re.sub(r'\b(a|an|the)\b', ' ', text): the word boundaries are judged on the input text.
std::u32string ReplaceArticles(const std::u32string& text) {
  static const std::u32string kArticles[] = {U"a", U"an", U"the"};
  const auto word_at = [&](size_t i) { return i < text.size() && IsPythonWordChar(text[i]); };
  std::u32string out;
  size_t i = 0;
  while (i < text.size()) {
    const bool boundary_before = i == 0 || !IsPythonWordChar(text[i - 1]);
    size_t matched = 0;
    if (boundary_before) {
      for (const std::u32string& article : kArticles) {
        if (text.compare(i, article.size(), article) == 0 && !word_at(i + article.size())) {
          matched = article.size();
          break;
        }
      }
    }
    if (matched > 0) {
      out.push_back(U' ');
      i += matched;
    } else {
      out.push_back(text[i++]);
    }
  }
  return out;
}

}  // namespace

std::string NormalizeWhitespace(absl::string_view text) {
  std::string out;
  for (const std::string& token : SplitPythonWhitespace(text)) {
    if (!out.empty()) out.push_back(' ');
    out += token;
  }
  return out;
}

std::string FoldCaseAscii(absl::string_view text) { return absl::AsciiStrToLower(text); }

absl::StatusOr<std::string> CanonicalizeJson(absl::string_view text) {
  // nlohmann throws; nothing here lets an exception out of this function.
  nlohmann::json value = nlohmann::json::parse(text.begin(), text.end(), /*cb=*/nullptr,
                                               /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not valid JSON: \"", absl::CEscape(text.substr(0, 80)), text.size() > 80 ? "...\"" : "\"",
        "; compare as text (Normalization::kWhitespace) instead"));
  }
  try {
    // nlohmann::json objects are std::map: dump() writes keys sorted, with no spaces at -1.
    return value.dump(/*indent=*/-1);
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("JSON holds a string that is not valid UTF-8: ", e.what()));
  }
}

std::string NormalizeSquad(absl::string_view text) {
  std::u32string lowered = DecodeUtf8(LowercaseUnicode(text));
  std::u32string no_punct;
  for (char32_t c : lowered) {
    if (!IsAsciiPunctuation(c)) no_punct.push_back(c);
  }
  return NormalizeWhitespace(EncodeUtf8(ReplaceArticles(no_punct)));
}

absl::StatusOr<std::string> Normalize(absl::string_view text, Normalization normalization) {
  switch (normalization) {
    case Normalization::kNone:
      return std::string(text);
    case Normalization::kWhitespace:
      return NormalizeWhitespace(text);
    case Normalization::kCaseFold:
      return FoldCaseAscii(NormalizeWhitespace(text));
    case Normalization::kJson:
      return CanonicalizeJson(text);
    case Normalization::kSquad:
      return NormalizeSquad(text);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown normalization ", static_cast<int>(normalization)));
}

absl::StatusOr<Normalization> ParseNormalization(absl::string_view name) {
  for (Normalization n : {Normalization::kNone, Normalization::kWhitespace,
                          Normalization::kCaseFold, Normalization::kJson, Normalization::kSquad}) {
    if (name == NormalizationName(n)) return n;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown normalization \"", name, "\"; use one of none, whitespace, case, json, squad"));
}

absl::string_view NormalizationName(Normalization normalization) {
  switch (normalization) {
    case Normalization::kNone:
      return "none";
    case Normalization::kWhitespace:
      return "whitespace";
    case Normalization::kCaseFold:
      return "case";
    case Normalization::kJson:
      return "json";
    case Normalization::kSquad:
      return "squad";
  }
  return "unknown";
}

}  // namespace anvil::eval
