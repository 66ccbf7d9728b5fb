// JSONL reading (every record form, a table of malformed inputs with their line numbers and
// field paths, caps, files) and the deterministic, resumable data order.
#include "train/dataset.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "train/data_order.h"

namespace anvil::train {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(JsonlTest, ReadsEveryRecordForm) {
  const std::string text =
      "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, "
      "{\"role\": \"user\", \"content\": \"U\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}\n"
      "\n"
      "   \r\n"
      "{\"prompt\": \"P\", \"completion\": \"C\", \"id\": 7}\r\n"
      "{\"prompt\": [{\"role\": \"user\", \"content\": \"P2\"}], "
      "\"completion\": [{\"role\": \"assistant\", \"content\": \"C2\"}]}";
  ANVIL_ASSERT_OK_AND_ASSIGN(const Dataset d, ParseJsonl(text, "t.jsonl"));
  EXPECT_EQ(d.kind, DatasetKind::kSft);
  ASSERT_EQ(d.chats.size(), 3u);
  EXPECT_EQ(d.chats[0].line, 1);
  EXPECT_EQ(d.chats[0].completion_start, 0u);
  ASSERT_EQ(d.chats[0].messages.size(), 3u);
  EXPECT_EQ(d.chats[0].messages[2].role, "assistant");
  EXPECT_EQ(d.chats[0].messages[2].content, "A");
  EXPECT_EQ(d.chats[1].line, 4);  // blank lines count
  EXPECT_EQ(d.chats[1].completion_start, 1u);
  EXPECT_EQ(d.chats[1].messages[0].role, "user");
  EXPECT_EQ(d.chats[1].messages[0].content, "P");
  EXPECT_EQ(d.chats[1].messages[1].role, "assistant");
  EXPECT_EQ(d.chats[1].messages[1].content, "C");
  EXPECT_EQ(d.chats[2].line, 5);
  EXPECT_EQ(d.chats[2].messages[1].content, "C2");
}

TEST(JsonlTest, ReadsPreferenceRecords) {
  const std::string text =
      "\xEF\xBB\xBF{\"prompt\": \"Q\", \"chosen\": \"good\", \"rejected\": \"bad\"}\n"
      "{\"prompt\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": "
      "\"Q\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": \"g\"}], "
      "\"rejected\": [{\"role\": \"assistant\", \"content\": \"b\"}]}\n";
  ANVIL_ASSERT_OK_AND_ASSIGN(const Dataset d, ParseJsonl(text, "p.jsonl"));
  EXPECT_EQ(d.kind, DatasetKind::kPreference);
  ASSERT_EQ(d.preferences.size(), 2u);
  EXPECT_EQ(d.size(), 2u);
  EXPECT_EQ(d.preferences[0].prompt[0].content, "Q");
  EXPECT_EQ(d.preferences[0].chosen[0].role, "assistant");
  EXPECT_EQ(d.preferences[0].rejected[0].content, "bad");
  EXPECT_EQ(d.preferences[1].prompt.size(), 2u);
  EXPECT_EQ(d.preferences[1].line, 2);
}

struct BadCase {
  const char* jsonl;
  const char* expected;  // substring of the message
};

TEST(JsonlTest, MalformedLinesAreReportedWithLineAndField) {
  const std::string ok =
      "{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, "
      "{\"role\": \"assistant\", \"content\": \"a\"}]}\n";
  const BadCase cases[] = {
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"assistant\", "
       "\"content\": \"a\"}, {\"role\": \"bot\", \"content\": \"x\"}]}",
       "d.jsonl:2: messages[2].role: expected \"system\", \"user\" or \"assistant\", got \"bot\""},
      {"{\"messages\": [{\"role\": \"user\", \"content\": 3}]}",
       "d.jsonl:2: messages[0].content: expected a string, got 3"},
      {"{\"messages\": [{\"role\": \"user\"}]}", "d.jsonl:2: messages[0].content: missing"},
      {"{\"messages\": [{\"content\": \"x\"}]}", "d.jsonl:2: messages[0].role: missing"},
      {"{\"messages\": [[1]]}", "d.jsonl:2: messages[0]: expected an object"},
      {"{\"messages\": \"hi\"}", "d.jsonl:2: messages: expected a list of messages, got \"hi\""},
      {"{\"messages\": []}", "d.jsonl:2: messages: empty list"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}]}",
       "d.jsonl:2: messages: no assistant message to train on"},
      {"{\"messages\": [{\"role\": null, \"content\": \"u\"}]}",
       "d.jsonl:2: messages[0].role: expected a string, got null"},
      {"{\"prompt\": \"p\"}", "d.jsonl:2: completion: missing"},
      {"{\"completion\": \"c\"}", "d.jsonl:2: prompt: missing"},
      {"{\"prompt\": 1, \"completion\": \"c\"}",
       "d.jsonl:2: prompt: expected a string or a list of messages, got 1"},
      {"{\"prompt\": \"p\", \"completion\": [{\"role\": \"user\", \"content\": \"c\"}]}",
       "d.jsonl:2: completion[0].role: expected \"assistant\", got \"user\""},
      {"{\"prompt\": \"p\", \"completion\": {\"a\": 1}}",
       "d.jsonl:2: completion: expected a string or a list of messages, got an object"},
      {"{\"text\": \"hello\"}", "d.jsonl:2: expected \"messages\", \"prompt\" + \"completion\""},
      {"{\"messages\": [], \"prompt\": \"p\"}", "d.jsonl:2: both \"messages\" and"},
      {"{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}",
       "d.jsonl:2: a preference record, but line 1 is a SFT record; a file holds one kind"},
      {"[1, 2]", "d.jsonl:2: expected a JSON object, got a list"},
      {"\"just a string\"", "d.jsonl:2: expected a JSON object, got \"just a string\""},
      {"{\"messages\": [", "d.jsonl:2: invalid JSON at column"},
      {"{\"messages\": \"\xFF\"}", "d.jsonl:2: invalid JSON"},
      {"{\"a\": 1} trailing", "d.jsonl:2: invalid JSON"},
      {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]",
       "d.jsonl:2: JSON nested deeper than 64"},
  };
  for (const BadCase& c : cases) {
    EXPECT_THAT(ParseJsonl(ok + c.jsonl + "\n" + ok, "d.jsonl"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expected)))
        << c.jsonl;
  }
}

TEST(JsonlTest, PreferenceFieldsAreChecked) {
  const std::string ok = "{\"prompt\": \"q\", \"chosen\": \"c\", \"rejected\": \"r\"}\n";
  const BadCase cases[] = {
      {"{\"prompt\": \"q\", \"chosen\": \"c\"}", "p.jsonl:2: rejected: missing"},
      {"{\"chosen\": \"c\", \"rejected\": \"r\"}", "p.jsonl:2: prompt: missing"},
      {"{\"prompt\": \"q\", \"chosen\": 5, \"rejected\": \"r\"}",
       "p.jsonl:2: chosen: expected a string or a list of messages, got 5"},
      {"{\"prompt\": \"q\", \"chosen\": \"c\", \"rejected\": [{\"role\": \"system\", "
       "\"content\": \"r\"}]}",
       "p.jsonl:2: rejected[0].role: expected \"assistant\", got \"system\""},
      {"{\"prompt\": \"q\", \"chosen\": \"c\", \"rejected\": \"r\", \"completion\": \"x\"}",
       "p.jsonl:2: \"completion\" and \"chosen\"/\"rejected\" given"},
      {"{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"assistant\", "
       "\"content\": \"a\"}]}",
       "p.jsonl:2: a SFT record, but line 1 is a preference record"},
  };
  for (const BadCase& c : cases) {
    EXPECT_THAT(ParseJsonl(ok + c.jsonl + "\n", "p.jsonl"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.expected)))
        << c.jsonl;
  }
}

TEST(JsonlTest, EveryBadLineIsListedUpToTheCap) {
  std::string text;
  for (int i = 0; i < 30; ++i) text += "{\"bad\": 1}\n";
  const absl::Status s = ParseJsonl(text, "many.jsonl").status();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("many.jsonl: 30 malformed lines:\nmany.jsonl:1: ")));
  EXPECT_THAT(s.message(), HasSubstr("many.jsonl:20: "));
  EXPECT_THAT(s.message(), Not(HasSubstr("many.jsonl:21: ")));
  EXPECT_THAT(s.message(), HasSubstr("... and 10 more"));
}

TEST(JsonlTest, CapsAndEmptyInput) {
  EXPECT_THAT(ParseJsonl("", "e.jsonl"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("e.jsonl: no records")));
  EXPECT_THAT(ParseJsonl("\n  \n", "e.jsonl"), StatusIs(absl::StatusCode::kInvalidArgument));
  ReadOptions small;
  small.max_line_bytes = 64;
  const std::string rec =
      "{\"prompt\": \"p\", \"completion\": \"c\"}\n";  // 38 bytes
  const std::string long_rec = "{\"prompt\": \"" + std::string(100, 'x') + "\", \"completion\": \"c\"}\n";
  EXPECT_THAT(ParseJsonl(rec + long_rec, "l.jsonl", small),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("l.jsonl:2: line is longer than 64 bytes")));
  small.max_records = 2;
  EXPECT_THAT(ParseJsonl(rec + rec + rec + rec, "n.jsonl", small),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("n.jsonl:3: more than 2 records")));
  EXPECT_THAT(ParseJsonl(rec + rec, "n.jsonl", small), IsOk());
}

TEST(JsonlTest, NeverCrashesOnGarbage) {
  // Every prefix of a valid record and a few byte soups: always a status, never a crash.
  const std::string rec =
      "{\"prompt\": [{\"role\": \"user\", \"content\": \"\\u00e9\\n\"}], \"chosen\": \"c\", "
      "\"rejected\": \"r\"}";
  for (size_t i = 0; i < rec.size(); ++i) {
    (void)ParseJsonl(rec.substr(0, i), "g.jsonl");
  }
  uint64_t x = 1;
  for (int n = 0; n < 200; ++n) {
    std::string soup;
    for (int i = 0; i < 64; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      soup.push_back("{}[]\":,\\ nu0a\x80\xff"[(x >> 33) % 16]);
    }
    EXPECT_THAT(ParseJsonl(soup, "g.jsonl"), Not(IsOk()));
  }
}

TEST(JsonlFileTest, ReadsFilesAndReportsMissingOnes) {
  const std::string dir = ::testing::TempDir();
  EXPECT_THAT(ReadJsonlFile(dir + "/no_such.jsonl"), StatusIs(absl::StatusCode::kNotFound));
  const std::string path = dir + "/train_dataset_test.jsonl";
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"prompt\": \"p\", \"completion\": \"c\"}\r\n\n{\"prompt\": 1}";  // no final newline
  }
  EXPECT_THAT(ReadJsonlFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path + ":3: completion: missing")));
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"prompt\": \"p\", \"completion\": \"c\"}\n" << std::string(3 << 20, ' ') << "x\n"
        << "{\"prompt\": \"p2\", \"completion\": \"c2\"}";
  }
  ReadOptions small;
  small.max_line_bytes = 1 << 20;  // the second line spans several read chunks
  EXPECT_THAT(ReadJsonlFile(path, small),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path + ":2: line is longer")));
  {
    std::ofstream out(path, std::ios::binary);
    out << "{\"prompt\": \"p\", \"completion\": \"c\"}\n{\"prompt\": \"p2\", \"completion\": \"c2\"}";
  }
  ANVIL_ASSERT_OK_AND_ASSIGN(const Dataset d, ReadJsonlFile(path));
  ASSERT_EQ(d.chats.size(), 2u);
  EXPECT_EQ(d.chats[1].messages[1].content, "c2");
  EXPECT_EQ(d.name, path);
  std::filesystem::remove(path);
}

// --- Data order --------------------------------------------------------------------------

TEST(DataOrderTest, SplitMix64MatchesItsReferenceOutput) {
  // First outputs for seed 1234567 from the reference C implementation (Vigna's splitmix64.c).
  SplitMix64 r(1234567);
  EXPECT_EQ(r.Next(), 6457827717110365317ull);
  EXPECT_EQ(r.Next(), 3203168211198807973ull);
  EXPECT_EQ(r.Next(), 9817491932198370423ull);
}

TEST(DataOrderTest, PermutationsAreFixedDeterministicAndDifferPerEpoch) {
  const std::vector<int64_t> p0 = EpochPermutation(10, 42, 0);
  EXPECT_EQ(p0, EpochPermutation(10, 42, 0));
  EXPECT_NE(p0, EpochPermutation(10, 42, 1));
  EXPECT_NE(p0, EpochPermutation(10, 43, 0));
  EXPECT_EQ(std::set<int64_t>(p0.begin(), p0.end()).size(), 10u);
  // Frozen: a change here changes every run's data order (and breaks resuming old checkpoints).
  EXPECT_EQ(p0, (std::vector<int64_t>{4, 6, 7, 0, 9, 5, 1, 2, 3, 8}));
  EXPECT_TRUE(EpochPermutation(0, 1, 0).empty());
  EXPECT_EQ(EpochPermutation(1, 1, 5), (std::vector<int64_t>{0}));
}

TEST(DataOrderTest, BelowIsUniform) {
  SplitMix64 r(7);
  std::vector<int> counts(7, 0);
  for (int i = 0; i < 70000; ++i) ++counts[r.Below(7)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
}

TEST(DataOrderTest, EpochsRollOverAndUnshuffledIsInOrder) {
  DataOrder plain(3, 9, /*shuffle=*/false);
  EXPECT_EQ(plain.NextBatch(7), (std::vector<int64_t>{0, 1, 2, 0, 1, 2, 0}));
  EXPECT_EQ(plain.position(), (DataPosition{2, 1}));

  DataOrder order(5, 42, true);
  const std::vector<int64_t> first = order.NextBatch(5);
  EXPECT_EQ(first, EpochPermutation(5, 42, 0));
  EXPECT_EQ(order.position(), (DataPosition{1, 0}));
  EXPECT_EQ(order.NextBatch(5), EpochPermutation(5, 42, 1));
}

TEST(DataOrderTest, ResumeSeesTheSameSequence) {
  DataOrder full(17, 2024, true);
  std::vector<int64_t> expected = full.NextBatch(100);
  for (int64_t cut : {0, 1, 16, 17, 18, 50, 99}) {
    DataOrder first(17, 2024, true);
    std::vector<int64_t> got = first.NextBatch(cut);
    const DataPosition saved = first.position();
    DataOrder resumed(17, 2024, true);  // a fresh process
    ASSERT_THAT(resumed.Seek(saved), IsOk());
    const std::vector<int64_t> rest = resumed.NextBatch(100 - cut);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, expected) << "cut at " << cut;
  }
  DataOrder o(17, 2024, true);
  ASSERT_THAT(o.Seek({3, 17}), IsOk());  // the end of epoch 3 is the start of epoch 4
  EXPECT_EQ(o.position(), (DataPosition{4, 0}));
  EXPECT_THAT(o.Seek({0, 18}), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("outside a dataset of 17 examples")));
  EXPECT_THAT(o.Seek({-1, 0}), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil::train
