// Tokenizer on hand-built vocabularies (merge order, special-token partition, decoding,
// vocabulary checks) and on the real SmolLM2 vocabulary against llama.cpp's token ids in
// tests/fixtures/tokenizer.json.
#include "model/tokenizer.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/byte_unicode.h"
#include "model/gguf.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<int32_t>;

// Tokens 0..255 are the one-character texts of bytes 0..255, so an unmerged byte b is token b.
VocabData ByteVocab(std::string pre = "gpt-2") {
  VocabData v;
  v.pre = std::move(pre);
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(ByteToUnicodeUtf8(static_cast<uint8_t>(b)));
    v.types.push_back(TokenType::kNormal);
  }
  return v;
}

int32_t AddToken(VocabData* v, std::string text, TokenType type = TokenType::kNormal) {
  v->tokens.push_back(std::move(text));
  v->types.push_back(type);
  return static_cast<int32_t>(v->tokens.size()) - 1;
}

std::unique_ptr<Tokenizer> MustCreate(VocabData v) {
  auto t = Tokenizer::Create(std::move(v));
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(t).value() : nullptr;
}

Ids Bytes(std::string_view s) {
  Ids ids;
  for (unsigned char c : s) ids.push_back(c);
  return ids;
}

TEST(BpeTest, LowestRankMergesFirstAndTiesGoLeft) {
  VocabData v = ByteVocab();
  const int32_t bc = AddToken(&v, "bc");
  const int32_t ab = AddToken(&v, "ab");
  AddToken(&v, "abc");
  const int32_t aa = AddToken(&v, "aa");
  const int32_t space_a = AddToken(&v, "\xC4\xA0" "a");  // "Ġa"
  v.merges = {"b c", "a b", "ab c", "a a", "\xC4\xA0 a"};
  auto tok = MustCreate(v);
  ASSERT_NE(tok, nullptr);
  // (b,c) has rank 0 and wins over (a,b); (a,bc) is not a merge, so "abc" is never reached.
  EXPECT_EQ(tok->Encode("abc", false, false), (Ids{'a', bc}));
  EXPECT_EQ(tok->Encode("ab", false, false), (Ids{ab}));
  // Equal ranks: the leftmost pair merges first.
  EXPECT_EQ(tok->Encode("aaa", false, false), (Ids{aa, 'a'}));
  EXPECT_EQ(tok->Encode("aaaa", false, false), (Ids{aa, aa}));
  // After (b,c) the queued (a,b) at position 0 is stale; the one at position 3 still applies.
  EXPECT_EQ(tok->Encode("abcab", false, false), (Ids{'a', bc, ab}));
  // " a" is one GPT-2 piece; its bytes are written as "Ġ" "a" and merge.
  EXPECT_EQ(tok->Encode("x a", false, false), (Ids{'x', space_a}));
  EXPECT_EQ(tok->Decode(Ids{'x', space_a}), "x a");
}

TEST(BpeTest, SymbolsMissingFromTheVocabularyAreDroppedAsInLlamaCpp) {
  VocabData v;
  v.pre = "gpt-2";
  v.tokens = {"a", "b"};
  auto tok = MustCreate(v);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("abc", false, false), (Ids{0, 1}));
}

TEST(BpeTest, IgnoreMergesTakesWholePiecesOnlyForLlama3) {
  VocabData v = ByteVocab("llama-bpe");
  const int32_t qqq = AddToken(&v, "qqq");  // reachable by no merge
  auto llama3 = MustCreate(v);
  v.pre = "gpt-2";
  auto gpt2 = MustCreate(v);
  ASSERT_NE(llama3, nullptr);
  ASSERT_NE(gpt2, nullptr);
  EXPECT_EQ(llama3->Encode("qqq", false, false), (Ids{qqq}));
  EXPECT_EQ(gpt2->Encode("qqq", false, false), (Ids{'q', 'q', 'q'}));
}

TEST(BpeTest, DropoutSkipsMergesAndKeepsTheText) {
  VocabData v = ByteVocab();
  const int32_t ab = AddToken(&v, "ab");
  const int32_t abc = AddToken(&v, "abc");
  const int32_t ctl = AddToken(&v, "<c>", TokenType::kControl);
  v.merges = {"a b", "ab c"};
  auto tok = MustCreate(v);
  ASSERT_NE(tok, nullptr);
  MergeDropout off{0.0, 1};
  EXPECT_EQ(tok->Encode("abc", false, false, &off), (Ids{abc}));
  // (a,b) dropped: nothing else can merge, so merging ends with bytes (probability p); else
  // (ab,c) dropped (p(1-p)); else the whole word.
  int whole = 0, pair = 0, bytes = 0;
  for (uint64_t seed = 0; seed < 1000; ++seed) {
    MergeDropout d{0.5, seed};
    const Ids got = tok->Encode("abc", false, false, &d);
    whole += got == Ids{abc};
    pair += got == Ids{ab, 'c'};
    bytes += got == Ids{'a', 'b', 'c'};
    MergeDropout again{0.5, seed};
    EXPECT_EQ(tok->Encode("abc", false, false, &again), got);  // the seed decides
  }
  EXPECT_EQ(whole + pair + bytes, 1000);
  EXPECT_NEAR(bytes, 500, 60);
  EXPECT_NEAR(pair, 250, 60);
  EXPECT_NEAR(whole, 250, 60);
  // Control tokens are never split; the text around them is.
  MergeDropout all{0.999999, 3};
  EXPECT_EQ(tok->Encode("ab<c>abc", false, true, &all), (Ids{'a', 'b', ctl, 'a', 'b', 'c'}));
}

TEST(SpecialTokenTest, ControlTokensSplitOnlyWithParseSpecial) {
  VocabData v = ByteVocab();
  const int32_t im_start = AddToken(&v, "<|im_start|>", TokenType::kControl);
  const int32_t user = AddToken(&v, "<u>", TokenType::kUserDefined);
  auto tok = MustCreate(v);
  ASSERT_NE(tok, nullptr);
  const std::string text = "a<|im_start|>b<u>c";
  EXPECT_EQ(tok->Encode(text, false, true), (Ids{'a', im_start, 'b', user, 'c'}));
  // Without parse_special the control token is plain text; user-defined ones still split.
  Ids expected = Bytes("a<|im_start|>b");
  expected.insert(expected.end(), {user, 'c'});
  EXPECT_EQ(tok->Encode(text, false, false), expected);

  EXPECT_EQ(tok->Decode(Ids{'a', im_start, 'b', user}), "a<|im_start|>b<u>");
  EXPECT_EQ(tok->Decode(Ids{'a', im_start, 'b', user}, /*special=*/false), "ab<u>");
  EXPECT_EQ(tok->TokenToPiece(im_start, false), "");
  EXPECT_EQ(tok->TokenToPiece(im_start, true), "<|im_start|>");
  EXPECT_EQ(tok->FindToken("<|im_start|>"), im_start);
  EXPECT_EQ(tok->FindToken("<|nope|>"), -1);
}

TEST(SpecialTokenTest, LongestCandidateIsSplitFirst) {
  VocabData v = ByteVocab();
  const int32_t xy = AddToken(&v, "xy", TokenType::kUserDefined);
  const int32_t xyz = AddToken(&v, "xyz", TokenType::kUserDefined);
  auto tok = MustCreate(v);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("xyzxy", false, false), (Ids{xyz, xy}));
}

TEST(SpecialTokenTest, BosEosAndEndOfGeneration) {
  VocabData v = ByteVocab();
  const int32_t bos = AddToken(&v, "<s>", TokenType::kControl);
  const int32_t eos = AddToken(&v, "<eos-here>", TokenType::kControl);
  const int32_t im_end = AddToken(&v, "<|im_end|>");  // normal type: forced to control
  v.bos_id = bos;
  v.eos_id = eos;
  v.add_bos = true;
  v.add_eos = true;
  auto tok = MustCreate(v);
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("a", true, true), (Ids{bos, 'a', eos}));
  EXPECT_EQ(tok->Encode("a", false, true), (Ids{'a'}));
  EXPECT_EQ(tok->Encode("", true, true), (Ids{bos, eos}));
  EXPECT_TRUE(tok->IsEndOfGeneration(eos));
  EXPECT_TRUE(tok->IsEndOfGeneration(im_end));
  EXPECT_EQ(tok->Type(im_end), TokenType::kControl);
  EXPECT_FALSE(tok->IsEndOfGeneration(bos));
  EXPECT_FALSE(tok->IsEndOfGeneration('a'));
}

TEST(TokenizerTest, RoundTripsRandomValidUtf8) {
  const uint32_t ranges[][2] = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x17F}, {0x370, 0x3FF},
                                {0x660, 0x669}, {0x3000, 0x3003}, {0x4E00, 0x4E80},
                                {0x1F600, 0x1F64F}, {0x85, 0x85}, {0x2000, 0x200B}};
  std::mt19937 rng(1234);
  for (const char* pre : {"gpt-2", "smollm", "llama-bpe", "default"}) {
    auto tok = MustCreate(ByteVocab(pre));
    ASSERT_NE(tok, nullptr);
    for (int trial = 0; trial < 200; ++trial) {
      std::string s;
      const int len = static_cast<int>(rng() % 40);
      for (int i = 0; i < len; ++i) {
        const auto& r = ranges[rng() % std::size(ranges)];
        AppendUtf8(r[0] + rng() % (r[1] - r[0] + 1), &s);
      }
      EXPECT_EQ(tok->Decode(tok->Encode(s, false, true)), s) << pre << " trial " << trial;
    }
  }
}

TEST(TokenizerTest, InvalidUtf8BecomesReplacementCharacter) {
  auto tok = MustCreate(ByteVocab());
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->Encode("a\xFF" "b", false, false), (Ids{'a', 0xEF, 0xBF, 0xBD, 'b'}));
  EXPECT_EQ(tok->Decode(tok->Encode("a\xFF" "b", false, false)), "a\xEF\xBF\xBD" "b");
  // Random bytes: encoding sees the text as the lenient decoder reads it.
  std::mt19937 rng(99);
  for (const char* pre : {"gpt-2", "smollm", "llama-bpe", "default"}) {
    auto t = MustCreate(ByteVocab(pre));
    ASSERT_NE(t, nullptr);
    for (int trial = 0; trial < 200; ++trial) {
      std::string s(rng() % 24, '\0');
      for (char& c : s) c = static_cast<char>(rng() % 256);
      std::string normalized;
      for (uint32_t cp : DecodeUtf8Lenient(s)) AppendUtf8(cp, &normalized);
      EXPECT_EQ(t->Decode(t->Encode(s, false, true)), normalized) << pre << " trial " << trial;
    }
  }
}

TEST(TokenizerTest, RejectsUnsupportedOrInconsistentVocabularies) {
  VocabData v = ByteVocab();
  v.model = "llama";
  EXPECT_THAT(Tokenizer::Create(v), StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("llama")));
  v = ByteVocab("unknown-pre");
  EXPECT_THAT(Tokenizer::Create(v),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("unknown-pre")));
  v = ByteVocab();
  v.merges = {"ab"};
  EXPECT_THAT(Tokenizer::Create(v), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ab")));
  v = ByteVocab();
  v.tokens.push_back("a");
  v.types.push_back(TokenType::kNormal);
  EXPECT_THAT(Tokenizer::Create(v),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  v = ByteVocab();
  v.types.pop_back();
  EXPECT_THAT(Tokenizer::Create(v), StatusIs(absl::StatusCode::kInvalidArgument));
  v = ByteVocab();
  v.bos_id = 256;
  EXPECT_THAT(Tokenizer::Create(v), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("bos")));
  v = ByteVocab();
  v.add_bos = true;
  EXPECT_THAT(Tokenizer::Create(v), StatusIs(absl::StatusCode::kInvalidArgument));
}

// --- The real SmolLM2 vocabulary -------------------------------------------------------------

class SmolLM2TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string path = testing::Q41ModelPath();
    if (!std::ifstream(path).good()) return;
    auto file = gguf::GgufFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    auto vocab = LoadVocab(**file);
    ASSERT_TRUE(vocab.ok()) << vocab.status();
    vocab_ = new VocabData(*vocab);
    auto tok = Tokenizer::Create(*vocab);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = tok->release();
  }
  void SetUp() override {
    if (tok_ == nullptr) GTEST_SKIP() << "model not found: " << testing::Q41ModelPath();
  }
  static inline VocabData* vocab_ = nullptr;
  static inline Tokenizer* tok_ = nullptr;
};

TEST_F(SmolLM2TokenizerTest, LoadVocabReadsTheMetadata) {
  EXPECT_EQ(vocab_->model, "gpt2");
  EXPECT_EQ(vocab_->pre, "smollm");
  EXPECT_EQ(vocab_->tokens.size(), 49152u);
  EXPECT_EQ(vocab_->types.size(), 49152u);
  EXPECT_EQ(vocab_->merges.size(), 48900u);
  EXPECT_EQ(vocab_->bos_id, 1);
  EXPECT_EQ(vocab_->eos_id, 2);
  EXPECT_EQ(vocab_->unk_id, 0);
  EXPECT_EQ(vocab_->pad_id, 2);
  EXPECT_FALSE(vocab_->add_bos);
  EXPECT_FALSE(vocab_->add_eos);
  EXPECT_EQ(tok_->TokenText(1), "<|im_start|>");
  EXPECT_EQ(tok_->Type(1), TokenType::kControl);
  EXPECT_TRUE(tok_->IsEndOfGeneration(2));  // <|im_end|>, eos
  EXPECT_TRUE(tok_->IsEndOfGeneration(0));  // <|endoftext|>
  EXPECT_FALSE(tok_->IsEndOfGeneration(1));
}

TEST_F(SmolLM2TokenizerTest, MatchesLlamaCppOnTheFixture) {
  const auto fixture = nlohmann::json::parse(
      testing::ReadFileOrDie(testing::FixturePath("tokenizer.json")));
  ASSERT_GE(fixture["cases"].size(), 30u);
  for (const auto& c : fixture["cases"]) {
    const std::string text = c["text"];
    const Ids want = c["ids"].get<Ids>();
    const Ids got = tok_->Encode(text, c["add_special"], c["parse_special"]);
    if (got != want) {
      size_t i = 0;
      while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
      ADD_FAILURE() << "text \"" << text << "\" (add_special " << c["add_special"]
                    << ", parse_special " << c["parse_special"] << "): first mismatch at index "
                    << i << " of " << want.size() << " (got "
                    << (i < got.size() ? std::to_string(got[i]) : "end") << ", want "
                    << (i < want.size() ? std::to_string(want[i]) : "end") << ")";
    }
    EXPECT_EQ(tok_->Decode(want), text) << "decoding the ids of \"" << text << "\"";
  }
}

TEST_F(SmolLM2TokenizerTest, DropoutGivesFinerTokensOfTheSameText) {
  const std::string text =
      testing::ReadFileOrDie("/usr/share/common-licenses/GPL-3").substr(0, 20000);
  const Ids canonical = tok_->Encode(text, false, false);
  MergeDropout d{0.1, 42};
  const Ids dropped = tok_->Encode(text, false, false, &d);
  EXPECT_EQ(tok_->Decode(dropped), text);
  // About a fifth more tokens at p = 0.1, and far fewer than bytes.
  EXPECT_GT(dropped.size(), canonical.size() * 11 / 10);
  EXPECT_LT(dropped.size(), canonical.size() * 2);
  for (int32_t id : dropped) ASSERT_EQ(tok_->Type(id), TokenType::kNormal) << id;
}

TEST_F(SmolLM2TokenizerTest, GplTextRoundTripsAndTime) {
  const std::string text = testing::ReadFileOrDie("/usr/share/common-licenses/GPL-3");
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = tok_->Encode(text, false, false);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("tokenized GPL-3 (%zu bytes) into %zu tokens in %.2f ms\n", text.size(), ids.size(),
              ms);
  RecordProperty("gpl3_encode_ms", std::to_string(ms));
  EXPECT_EQ(tok_->Decode(ids), text);
}

}  // namespace
}  // namespace anvil
