// The GPT-2 byte <-> unicode alphabet of byte-level BPE vocabularies (notes §3.2): every byte
// maps to one code point, and vocabulary entries are written in those code points. Also the
// lenient UTF-8 decoder/encoder the tokenizer shares with llama.cpp's unicode.cpp behaviour.
// Nothing here knows about tokens or merges.
#ifndef ANVIL_MODEL_BYTE_UNICODE_H_
#define ANVIL_MODEL_BYTE_UNICODE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace anvil {

// The code point byte `b` is written as (0x21..0x7E, 0xA1..0xAC, 0xAE..0xFF map to themselves;
// the other 68 bytes, in increasing order, to U+0100..U+0143).
uint32_t ByteToUnicode(uint8_t b);
// UTF-8 text of ByteToUnicode(b) (one or two bytes).
const std::string& ByteToUnicodeUtf8(uint8_t b);
// The byte written as code point `cp`, or -1 if `cp` is not in the alphabet.
int UnicodeToByte(uint32_t cp);

// Appends the UTF-8 encoding of `cp`; code points above U+10FFFF are written as U+FFFD.
// Surrogates are encoded as-is (three bytes), as llama.cpp does.
void AppendUtf8(uint32_t cp, std::string* out);

// Decodes UTF-8 leniently, as llama.cpp's unicode_cpts_from_utf8: a byte that does not start a
// well-formed sequence (bad lead byte, missing continuation bytes, truncated at the end)
// becomes U+FFFD and decoding resumes at the next byte. Overlong forms are not rejected.
std::vector<uint32_t> DecodeUtf8Lenient(std::string_view text);

}  // namespace anvil

#endif  // ANVIL_MODEL_BYTE_UNICODE_H_
