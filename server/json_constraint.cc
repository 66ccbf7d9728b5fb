// A byte-level JSON recognizer (RFC 8259) restricted to one top-level object, and the logits
// mask built on it.
#include "server/json_constraint.h"

#include <cmath>

namespace anvil::server {
namespace {

bool IsWs(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsHex(unsigned char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Number sub-states: which bytes may come next.
enum Num : uint8_t {
  kMinus,     // after '-': a digit
  kZero,      // after a leading 0: '.', 'e', or the end
  kInt,       // in integer digits
  kDot,       // after '.': a digit
  kFrac,      // in fraction digits
  kExp,       // after 'e': sign or digit
  kExpSign,   // after the exponent sign: a digit
  kExpDigits  // in exponent digits
};

}  // namespace

bool JsonPrefix::Feed(std::string_view text) {
  for (char ch : text) {
    if (!Step(static_cast<unsigned char>(ch))) return false;
  }
  return true;
}

bool JsonPrefix::Step(unsigned char c) {
  auto close = [this]() {
    stack_.pop_back();
    if (stack_.empty()) {
      mode_ = Mode::kDone;
      complete_ = true;
    } else {
      mode_ = Mode::kAfterValue;
    }
  };
  auto begin_value = [&](unsigned char v) -> bool {
    if (v == '{') {
      stack_.push_back('{');
      mode_ = Mode::kKeyOrClose;
    } else if (v == '[') {
      stack_.push_back('[');
      mode_ = Mode::kValueOrClose;
    } else if (v == '"') {
      string_is_key_ = false;
      mode_ = Mode::kString;
    } else if (v == '-' || IsDigit(v)) {
      num_ = v == '-' ? kMinus : v == '0' ? kZero : kInt;
      mode_ = Mode::kNumber;
    } else if (v == 't' || v == 'f' || v == 'n') {
      lit_ = v == 't' ? std::string_view("rue") : v == 'f' ? "alse" : "ull";
      mode_ = Mode::kLiteral;
    } else {
      return false;
    }
    return true;
  };
  switch (mode_) {
    case Mode::kBeforeObject:
      if (IsWs(c)) return true;
      if (c != '{') return false;
      stack_.push_back('{');
      mode_ = Mode::kKeyOrClose;
      return true;
    case Mode::kKeyOrClose:
    case Mode::kKey:
      if (IsWs(c)) return true;
      if (c == '"') {
        string_is_key_ = true;
        mode_ = Mode::kString;
        return true;
      }
      if (c == '}' && mode_ == Mode::kKeyOrClose) {
        close();
        return true;
      }
      return false;
    case Mode::kColon:
      if (IsWs(c)) return true;
      if (c != ':') return false;
      mode_ = Mode::kValue;
      return true;
    case Mode::kValueOrClose:
      if (IsWs(c)) return true;
      if (c == ']') {
        close();
        return true;
      }
      return begin_value(c);
    case Mode::kValue:
      if (IsWs(c)) return true;
      return begin_value(c);
    case Mode::kAfterValue:
      if (IsWs(c)) return true;
      if (c == ',') {
        mode_ = stack_.back() == '{' ? Mode::kKey : Mode::kValue;
        return true;
      }
      if ((c == '}' && stack_.back() == '{') || (c == ']' && stack_.back() == '[')) {
        close();
        return true;
      }
      return false;
    case Mode::kString:
      if (utf8_left_ > 0) {
        if ((c & 0xC0) != 0x80) return false;
        --utf8_left_;
        return true;
      }
      if (c == '"') {
        mode_ = string_is_key_ ? Mode::kColon : Mode::kAfterValue;
        return true;
      }
      if (c == '\\') {
        mode_ = Mode::kEscape;
        return true;
      }
      if (c < 0x20) return false;
      if (c >= 0x80) {
        if ((c & 0xE0) == 0xC0 && c >= 0xC2) {
          utf8_left_ = 1;
        } else if ((c & 0xF0) == 0xE0) {
          utf8_left_ = 2;
        } else if ((c & 0xF8) == 0xF0 && c <= 0xF4) {
          utf8_left_ = 3;
        } else {
          return false;
        }
      }
      return true;
    case Mode::kEscape:
      if (c == 'u') {
        hex_left_ = 4;
        mode_ = Mode::kUnicode;
        return true;
      }
      if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
          c == 't') {
        mode_ = Mode::kString;
        return true;
      }
      return false;
    case Mode::kUnicode:
      if (!IsHex(c)) return false;
      if (--hex_left_ == 0) mode_ = Mode::kString;
      return true;
    case Mode::kNumber: {
      const bool digit = IsDigit(c);
      switch (num_) {
        case kMinus:
          if (!digit) return false;
          num_ = c == '0' ? kZero : kInt;
          return true;
        case kZero:
        case kInt:
        case kFrac:
          if (digit && num_ != kZero) return true;
          if (c == '.' && num_ != kFrac) {
            num_ = kDot;
            return true;
          }
          if (c == 'e' || c == 'E') {
            num_ = kExp;
            return true;
          }
          break;  // the number ends here
        case kDot:
          if (!digit) return false;
          num_ = kFrac;
          return true;
        case kExp:
          if (c == '+' || c == '-') {
            num_ = kExpSign;
            return true;
          }
          if (!digit) return false;
          num_ = kExpDigits;
          return true;
        case kExpSign:
          if (!digit) return false;
          num_ = kExpDigits;
          return true;
        case kExpDigits:
          if (digit) return true;
          break;
      }
      mode_ = Mode::kAfterValue;
      return Step(c);
    }
    case Mode::kLiteral:
      if (c != static_cast<unsigned char>(lit_.front())) return false;
      lit_.remove_prefix(1);
      if (lit_.empty()) mode_ = Mode::kAfterValue;
      return true;
    case Mode::kDone:
      return false;
  }
  return false;
}

int64_t JsonConstraint::Mask(float* logits) const {
  int64_t allowed = 0;
  const int64_t n = static_cast<int64_t>(vocab_->pieces.size());
  for (int64_t id = 0; id < n; ++id) {
    const size_t i = static_cast<size_t>(id);
    if (std::isinf(logits[id]) && logits[id] < 0) continue;
    bool ok;
    if (vocab_->eog[i]) {
      ok = state_.complete();
    } else if (!vocab_->eligible[i]) {
      ok = false;
    } else {
      JsonPrefix probe = state_;
      ok = probe.Feed(vocab_->pieces[i]);
    }
    if (ok) {
      ++allowed;
    } else {
      logits[id] = -INFINITY;
    }
  }
  return allowed;
}

}  // namespace anvil::server
