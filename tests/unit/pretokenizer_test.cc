// The GPT-2 byte alphabet, the lenient UTF-8 decoder and the pre-tokenizer splitters. Expected
// pieces are derived by hand from the regexes quoted in model/pretokenizer.h.
#include "model/pretokenizer.h"

#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/byte_unicode.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Split(PreTokenizer p, std::string_view text) {
  std::vector<std::string> pieces;
  PreTokenize(p, text, &pieces);
  return pieces;
}

TEST(ByteUnicodeTest, IsABijectionWithTheKnownPoints) {
  std::set<uint32_t> seen;
  int moved = 0;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = ByteToUnicode(static_cast<uint8_t>(b));
    EXPECT_TRUE(seen.insert(cp).second) << "byte " << b;
    EXPECT_EQ(UnicodeToByte(cp), b);
    std::string utf8;
    AppendUtf8(cp, &utf8);
    EXPECT_EQ(ByteToUnicodeUtf8(static_cast<uint8_t>(b)), utf8);
    if (cp != static_cast<uint32_t>(b)) ++moved;
  }
  EXPECT_EQ(moved, 68);
  EXPECT_EQ(ByteToUnicode(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(ByteToUnicode('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(ByteToUnicode('\t'), 0x109u);
  EXPECT_EQ(ByteToUnicode(0x00), 0x100u);
  EXPECT_EQ(ByteToUnicode(0x7F), 0x121u);
  EXPECT_EQ(ByteToUnicode(0xA0), 0x142u);
  EXPECT_EQ(ByteToUnicode(0xAD), 0x143u);
  EXPECT_EQ(ByteToUnicode('A'), static_cast<uint32_t>('A'));
  EXPECT_EQ(ByteToUnicode(0xE9), 0xE9u);
  EXPECT_EQ(ByteToUnicodeUtf8(' '), "\xC4\xA0");
  EXPECT_EQ(UnicodeToByte(0x144), -1);
  EXPECT_EQ(UnicodeToByte(0x20), -1);  // space itself is not in the alphabet
}

TEST(Utf8Test, BadBytesBecomeReplacementCharacters) {
  EXPECT_THAT(DecodeUtf8Lenient("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"),
              ElementsAre('a', 0xE9u, 0x20ACu, 0x1F600u));
  EXPECT_THAT(DecodeUtf8Lenient("a\xFF" "b"), ElementsAre('a', 0xFFFDu, 'b'));
  EXPECT_THAT(DecodeUtf8Lenient("\x80"), ElementsAre(0xFFFDu));
  // A truncated sequence: each byte is replaced, and decoding resumes at the next byte.
  EXPECT_THAT(DecodeUtf8Lenient("\xE2\x82"), ElementsAre(0xFFFDu, 0xFFFDu));
  EXPECT_THAT(DecodeUtf8Lenient("\xE2\x82x"), ElementsAre(0xFFFDu, 0xFFFDu, 'x'));
}

TEST(PreTokenizerTest, NamesMapAsInLlamaCpp) {
  EXPECT_EQ(*PreTokenizerFromName("smollm"), PreTokenizer::kSmolLM);
  EXPECT_EQ(*PreTokenizerFromName("starcoder"), PreTokenizer::kSmolLM);
  EXPECT_EQ(*PreTokenizerFromName("gpt-2"), PreTokenizer::kGpt2);
  EXPECT_EQ(*PreTokenizerFromName("llama-bpe"), PreTokenizer::kLlama3);
  EXPECT_EQ(*PreTokenizerFromName(""), PreTokenizer::kDefault);
  EXPECT_EQ(*PreTokenizerFromName("default"), PreTokenizer::kDefault);
  EXPECT_THAT(PreTokenizerFromName("unknown-pre"),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("unknown-pre")));
  EXPECT_TRUE(PreTokenizerIgnoresMerges(PreTokenizer::kLlama3));
  EXPECT_FALSE(PreTokenizerIgnoresMerges(PreTokenizer::kSmolLM));
}

TEST(PreTokenizerTest, Gpt2Pattern) {
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "Hello  world"), ElementsAre("Hello", " ", " world"));
  // A newline never joins a word; \s+(?!\S) leaves the last whitespace to the word.
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "a\n\nb"), ElementsAre("a", "\n", "\n", "b"));
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "x   "), ElementsAre("x", "   "));
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "don't"), ElementsAre("don", "'t"));
  // Contractions are case-sensitive here.
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "I'M"), ElementsAre("I", "'", "M"));
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "x = 12+ab"), ElementsAre("x", " =", " 12", "+", "ab"));
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD!"),
              ElementsAre("caf\xC3\xA9", " \xE4\xBD\xA0\xE5\xA5\xBD", "!"));
}

TEST(PreTokenizerTest, SmolLMIsolatesEveryDigit) {
  EXPECT_THAT(Split(PreTokenizer::kSmolLM, " 123"), ElementsAre(" ", "1", "2", "3"));
  EXPECT_THAT(Split(PreTokenizer::kSmolLM, "ab12 c"), ElementsAre("ab", "1", "2", " c"));
  // U+0663 ARABIC-INDIC DIGIT THREE is \p{N} too.
  EXPECT_THAT(Split(PreTokenizer::kSmolLM, "x\xD9\xA3y"), ElementsAre("x", "\xD9\xA3", "y"));
}

TEST(PreTokenizerTest, Llama3Pattern) {
  EXPECT_THAT(Split(PreTokenizer::kLlama3, "abc  \n\n def 12345"),
              ElementsAre("abc", "  \n\n", " def", " ", "123", "45"));
  EXPECT_THAT(Split(PreTokenizer::kLlama3, "I'M ok"), ElementsAre("I", "'M", " ok"));
  EXPECT_THAT(Split(PreTokenizer::kLlama3, "(x)!\n\nok"), ElementsAre("(x", ")!\n\n", "ok"));
  EXPECT_THAT(Split(PreTokenizer::kLlama3, "a "), ElementsAre("a", " "));
}

TEST(PreTokenizerTest, DefaultAppliesFourStages) {
  // [P$+<=>^~|]+ -> "a" "+=" "b 1234" ","; GPT-2 -> "b" " 1234"; \p{N}+ -> " " "1234";
  // [0-9]{3} -> "123" "4".
  EXPECT_THAT(Split(PreTokenizer::kDefault, "a+=b 1234,"),
              ElementsAre("a", "+=", "b", " ", "123", "4", ","));
}

TEST(PreTokenizerTest, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_THAT(Split(PreTokenizer::kGpt2, "a\xFF" "b"), ElementsAre("a", "\xEF\xBF\xBD", "b"));
  EXPECT_TRUE(Split(PreTokenizer::kSmolLM, "").empty());
}

}  // namespace
}  // namespace anvil
