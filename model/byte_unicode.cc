// GPT-2 byte-to-unicode tables (built once) and the lenient UTF-8 codec used by the tokenizer.
#include "model/byte_unicode.h"

#include <array>

namespace anvil {
namespace {

bool MapsToItself(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<uint32_t, 256> byte_to_cp;
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 0x144> cp_to_byte;  // every mapped code point is below U+0144

  Tables() {
    cp_to_byte.fill(-1);
    uint32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      const uint32_t cp = MapsToItself(b) ? static_cast<uint32_t>(b) : next++;
      byte_to_cp[b] = cp;
      cp_to_byte[cp] = static_cast<int16_t>(b);
      AppendUtf8(cp, &byte_to_utf8[b]);
    }
  }
};

const Tables& GetTables() {
  static const Tables* const tables = new Tables();
  return *tables;
}

bool IsContinuation(uint8_t c) { return (c & 0xC0) == 0x80; }

}  // namespace

uint32_t ByteToUnicode(uint8_t b) { return GetTables().byte_to_cp[b]; }

const std::string& ByteToUnicodeUtf8(uint8_t b) { return GetTables().byte_to_utf8[b]; }

int UnicodeToByte(uint32_t cp) {
  return cp < 0x144 ? GetTables().cp_to_byte[cp] : -1;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp > 0x10FFFF) cp = 0xFFFD;
  if (cp <= 0x7F) {
    out->push_back(static_cast<char>(cp));
  } else if (cp <= 0x7FF) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp <= 0xFFFF) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<uint32_t> DecodeUtf8Lenient(std::string_view text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const uint8_t c = s[i];
    // Sequence length from the lead byte: 0 means "not a lead byte" (a stray continuation byte
    // or 0xF8..0xFF). The decoder accepts 0xF5..0xF7 leads like llama.cpp; AppendUtf8 turns
    // the resulting out-of-range values into U+FFFD.
    size_t len = c < 0x80 ? 1 : c < 0xC0 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF8 ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) ok = IsContinuation(s[i + k]);
    if (!ok) {
      cps.push_back(0xFFFD);
      ++i;
      continue;
    }
    uint32_t cp;
    switch (len) {
      case 1: cp = c; break;
      case 2: cp = ((c & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu); break;
      case 3: cp = ((c & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu); break;
      default:
        cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
             (s[i + 3] & 0x3Fu);
        break;
    }
    cps.push_back(cp);
    i += len;
  }
  return cps;
}

}  // namespace anvil
