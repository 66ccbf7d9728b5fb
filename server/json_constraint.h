// Constrained decoding for json_object requests: the output must stay a prefix of exactly one
// JSON object (RFC 8259 grammar; whitespace allowed around tokens, before the object but not
// after it), and ends when the object closes.
#ifndef ANVIL_SERVER_JSON_CONSTRAINT_H_
#define ANVIL_SERVER_JSON_CONSTRAINT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace anvil::server {

// An incremental JSON-object recognizer over bytes.
class JsonPrefix {
 public:
  // Feeds `text`; false when some byte cannot continue a valid prefix (the state is then
  // meaningless: probe a copy).
  bool Feed(std::string_view text);
  bool complete() const { return complete_; }  // the object has closed

 private:
  bool Step(unsigned char c);

  enum class Mode : uint8_t {
    kBeforeObject,  // whitespace, then '{'
    kValue,         // expecting a value (after ':' or ',' in an array)
    kValueOrClose,  // after '[': a value or ']'
    kKeyOrClose,    // after '{': a key string or '}'
    kKey,           // after ',' in an object: a key string
    kColon,         // after a key
    kAfterValue,    // ',' or the closer of the innermost container
    kString,        // inside a string (key or value)
    kEscape,        // after '\' in a string
    kUnicode,       // inside \uXXXX (hex_left_ digits left)
    kNumber,        // inside a number (num_ holds the sub-state)
    kLiteral,       // inside true/false/null (lit_ = the rest to match)
    kDone,
  };
  Mode mode_ = Mode::kBeforeObject;
  std::string stack_;        // '{' / '[' per open container
  bool string_is_key_ = false;
  int hex_left_ = 0;
  int utf8_left_ = 0;        // continuation bytes expected inside a string
  uint8_t num_ = 0;          // number sub-state, see json_constraint.cc
  std::string_view lit_;     // remaining literal bytes
  bool complete_ = false;
};

// Vocabulary facts the constraint needs, computed once per engine.
struct JsonVocab {
  std::vector<std::string> pieces;  // id -> TokenToPiece(id, special = true)
  std::vector<bool> eligible;       // id -> may appear in JSON output (not control, not empty)
  std::vector<bool> eog;            // id -> ends generation
};

// Masks a logits row to the tokens whose text keeps the output a valid prefix; the end of
// generation tokens are allowed only once the object is complete.
class JsonConstraint {
 public:
  explicit JsonConstraint(const JsonVocab* vocab) : vocab_(vocab) {}
  // Sets disallowed logits to -inf. Returns the number of allowed tokens.
  int64_t Mask(float* logits) const;
  // Records the chosen token's text.
  void Accept(std::string_view piece) { state_.Feed(piece); }
  bool complete() const { return state_.complete(); }

 private:
  const JsonVocab* vocab_;
  JsonPrefix state_;
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_JSON_CONSTRAINT_H_
