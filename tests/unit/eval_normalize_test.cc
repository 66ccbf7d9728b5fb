// eval/ normalizers, exact match and SQuAD token F1 on hand-checked cases (the fixture test,
// eval_text_metrics_test, checks the SQuAD pair-by-pair against the official script).
#include <string>
#include <vector>

#include "eval/exact_match.h"
#include "eval/normalize.h"
#include "eval/rouge.h"
#include "eval/token_f1.h"
#include "eval/tokenizer_13a.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anvil::eval {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct NormalizeCase {
  std::string input;
  Normalization normalization;
  std::string want;
};

TEST(NormalizeTest, Table) {
  const NormalizeCase cases[] = {
      {"  a \t b\n\nc  ", Normalization::kWhitespace, "a b c"},
      {"x\u00a0\u00a0y\u3000z", Normalization::kWhitespace, "x y z"},  // Unicode spaces
      {"", Normalization::kWhitespace, ""},
      {"   ", Normalization::kWhitespace, ""},
      {" Hello  WORLD ", Normalization::kCaseFold, "hello world"},
      {"ÉCOLE", Normalization::kCaseFold, "École"},  // non-ASCII untouched
      {" Keep  AS is ", Normalization::kNone, " Keep  AS is "},
      {"The Quick, brown fox!", Normalization::kSquad, "quick brown fox"},
      {"an apple a day", Normalization::kSquad, "apple day"},
      {"Theatre and an Anthem", Normalization::kSquad, "theatre and anthem"},
      {"ÉCOLE Normale", Normalization::kSquad, "école normale"},  // Unicode lowercase
      {"the—end", Normalization::kSquad, "—end"},                 // \b before the em dash
      {"a_b", Normalization::kSquad, "ab"},  // '_' is punctuation, removed first
      {"...", Normalization::kSquad, ""},
      {R"({"b": 1, "a": [1, 2.5, "x"]})", Normalization::kJson, R"({"a":[1,2.5,"x"],"b":1})"},
      {"  [ 1 ,2 ]  ", Normalization::kJson, "[1,2]"},
      {R"("caf\u00e9")", Normalization::kJson, "\"café\""},
      {R"({"a": 1, "a": 2})", Normalization::kJson, R"({"a":2})"},  // last duplicate wins
  };
  for (const NormalizeCase& c : cases) {
    absl::StatusOr<std::string> got = Normalize(c.input, c.normalization);
    ASSERT_THAT(got, IsOk()) << c.input;
    EXPECT_EQ(*got, c.want) << "input \"" << c.input << "\" with "
                            << NormalizationName(c.normalization);
  }
}

TEST(NormalizeTest, InvalidJsonIsInvalidArgument) {
  for (const char* bad : {"{\"a\": 1", "", "not json", "{'a': 1}", "[1, 2,]"}) {
    EXPECT_THAT(CanonicalizeJson(bad),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not valid JSON")))
        << bad;
  }
  EXPECT_THAT(CanonicalizeJson("\"\xff\""), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(NormalizeTest, ParseNormalizationRoundTrips) {
  for (Normalization n : {Normalization::kNone, Normalization::kWhitespace,
                          Normalization::kCaseFold, Normalization::kJson, Normalization::kSquad}) {
    absl::StatusOr<Normalization> parsed = ParseNormalization(NormalizationName(n));
    ASSERT_THAT(parsed, IsOk());
    EXPECT_EQ(*parsed, n);
  }
  EXPECT_THAT(ParseNormalization("lower"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("squad")));
}

struct MatchCase {
  std::string prediction;
  std::string reference;
  Normalization normalization;
  bool want;
};

TEST(ExactMatchTest, Table) {
  const MatchCase cases[] = {
      {"Paris", "Paris", Normalization::kNone, true},
      {"Paris ", "Paris", Normalization::kNone, false},
      {" Paris\n", "Paris", Normalization::kWhitespace, true},
      {"paris", "Paris", Normalization::kWhitespace, false},
      {"PARIS  city", "paris city", Normalization::kCaseFold, true},
      {"école", "ÉCOLE", Normalization::kCaseFold, false},
      {"The Eiffel Tower.", "eiffel tower", Normalization::kSquad, true},
      {"Eiffel", "eiffel tower", Normalization::kSquad, false},
      {R"({"name": "Alice", "age": 30})", R"({"age":30,"name":"Alice"})", Normalization::kJson,
       true},
      {"{\n  \"a\" : [1, 2]\n}", R"({"a":[1,2]})", Normalization::kJson, true},
      {R"({"a": [1, 2]})", R"({"a": [2, 1]})", Normalization::kJson, false},  // arrays keep order
      {R"({"a": 1})", R"({"a": 1.0})", Normalization::kJson, false},          // int vs float
      {R"({"a": "x"})", R"({"a": "X"})", Normalization::kJson, false},
  };
  for (const MatchCase& c : cases) {
    absl::StatusOr<bool> got = ExactMatch(c.prediction, c.reference, c.normalization);
    ASSERT_THAT(got, IsOk()) << c.prediction;
    EXPECT_EQ(*got, c.want) << "\"" << c.prediction << "\" vs \"" << c.reference << "\" with "
                            << NormalizationName(c.normalization);
  }
}

TEST(ExactMatchTest, InvalidJsonNamesTheSideAndTextFallbackWorks) {
  EXPECT_THAT(ExactMatch("{\"a\": 1", "{\"a\": 1}", Normalization::kJson),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("prediction")));
  EXPECT_THAT(ExactMatch("{\"a\": 1}", "{oops", Normalization::kJson),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reference")));
  EXPECT_TRUE(ExactMatchJsonOrText(R"({"b":2, "a":1})", R"({"a": 1, "b": 2})"));
  EXPECT_FALSE(ExactMatchJsonOrText("{\"a\": 1", R"({"a": 1})"));
  EXPECT_TRUE(ExactMatchJsonOrText(" yes  sir", "yes sir"));  // neither is JSON: text
}

TEST(ExactMatchTest, ScoreIsMaxOverReferences) {
  const std::vector<std::string> refs = {"Lyon", "Paris"};
  absl::StatusOr<double> score = ExactMatchScore("paris", refs, Normalization::kCaseFold);
  ASSERT_THAT(score, IsOk());
  EXPECT_EQ(*score, 1.0);
  score = ExactMatchScore("Nice", refs, Normalization::kCaseFold);
  ASSERT_THAT(score, IsOk());
  EXPECT_EQ(*score, 0.0);
  EXPECT_THAT(ExactMatchScore("x", {}, Normalization::kNone),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

struct F1Case {
  std::string prediction;
  std::string reference;
  double precision, recall, f1;
};

TEST(TokenF1Test, Table) {
  const F1Case cases[] = {
      {"the cat sat", "cat sat", 1.0, 1.0, 1.0},  // article removed
      {"cat sat on mat", "cat sat", 0.5, 1.0, 2.0 / 3.0},
      {"cat cat cat", "cat", 1.0 / 3.0, 1.0, 0.5},  // bag: one cat matches
      {"cat dog", "dog cat", 1.0, 1.0, 1.0},        // order ignored
      {"red blue", "green", 0.0, 0.0, 0.0},
      {"", "", 1.0, 1.0, 1.0},  // both empty (SQuAD v2)
      {"", "cat", 0.0, 0.0, 0.0},
      {"The.", "a", 1.0, 1.0, 1.0},  // both normalize to nothing
      {"New York City!", "new york", 2.0 / 3.0, 1.0, 0.8},
  };
  for (const F1Case& c : cases) {
    const TokenF1Result got = TokenF1(c.prediction, c.reference);
    const std::string what = "\"" + c.prediction + "\" vs \"" + c.reference + "\"";
    EXPECT_DOUBLE_EQ(got.precision, c.precision) << what;
    EXPECT_DOUBLE_EQ(got.recall, c.recall) << what;
    EXPECT_DOUBLE_EQ(got.f1, c.f1) << what;
  }
  absl::StatusOr<double> best = TokenF1Score("cat sat", {"dog", "cat sat down"});
  ASSERT_THAT(best, IsOk());
  EXPECT_DOUBLE_EQ(*best, 0.8);
  EXPECT_THAT(TokenF1Score("x", {}), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(TokenizerTest, Tokenize13aAndRouge) {
  EXPECT_THAT(Tokenize13a("Hello, world! 3.14 and 1,000-2,000 e.g."),
              ElementsAre("Hello", ",", "world", "!", "3.14", "and", "1,000", "-", "2,000", "e",
                          ".", "g", "."));
  EXPECT_THAT(Tokenize13a("&amp;lt;"), ElementsAre("<"));
  EXPECT_THAT(RougeTokenize("Héllo WORLD_42 İx"), ElementsAre("h", "llo", "world", "42", "i", "x"));
}

}  // namespace
}  // namespace anvil::eval
