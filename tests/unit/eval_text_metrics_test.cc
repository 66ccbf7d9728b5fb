// eval/ text metrics against the reference packages: every pair of
// tests/fixtures/eval/text_metrics.json (written by scripts/reference/metrics_golden.py with
// rouge-score and sacrebleu) must match within 1e-6 — ROUGE-L, chrF, sentence BLEU (four
// smoothings), SQuAD exact match / F1, corpus BLEU and chrF, and the multi-reference cases.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "eval/bleu.h"
#include "eval/chrf.h"
#include "eval/exact_match.h"
#include "eval/rouge.h"
#include "eval/token_f1.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace anvil::eval {
namespace {

constexpr double kTol = 1e-6;

nlohmann::json LoadFixture() {
  const std::string path = std::string(ANVIL_FIXTURES_DIR) + "/eval/text_metrics.json";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path
                         << "; regenerate with scripts/reference/metrics_golden.sh";
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::string Describe(const nlohmann::json& pair) {
  return absl::StrCat("pair ", pair["index"].get<int>(), ": prediction \"",
                      absl::CEscape(pair["prediction"].get<std::string>()), "\" reference \"",
                      absl::CEscape(pair["reference"].get<std::string>()), "\"");
}

void ExpectBleuMatches(const BleuScore& got, const nlohmann::json& want, const std::string& what) {
  EXPECT_NEAR(got.score, want["score"].get<double>(), kTol) << what;
  EXPECT_NEAR(got.brevity_penalty, want["bp"].get<double>(), kTol) << what;
  EXPECT_EQ(got.sys_len, want["sys_len"].get<int64_t>()) << what;
  EXPECT_EQ(got.ref_len, want["ref_len"].get<int64_t>()) << what;
  for (size_t n = 0; n < 4; ++n) {
    EXPECT_EQ(got.counts[n], want["counts"][n].get<double>()) << what << " order " << n + 1;
    EXPECT_EQ(got.totals[n], want["totals"][n].get<double>()) << what << " order " << n + 1;
    EXPECT_NEAR(got.precisions[n], want["precisions"][n].get<double>(), kTol)
        << what << " order " << n + 1;
  }
}

TEST(TextMetricsFixtureTest, HasEnoughPairs) {
  const nlohmann::json fixture = LoadFixture();
  EXPECT_GE(fixture["pairs"].size(), 60u);
}

TEST(TextMetricsFixtureTest, RougeLMatchesRougeScore) {
  for (const nlohmann::json& pair : LoadFixture()["pairs"]) {
    const RougeScore got =
        RougeL(pair["prediction"].get<std::string>(), pair["reference"].get<std::string>());
    const nlohmann::json& want = pair["rougeL"];
    EXPECT_NEAR(got.precision, want["precision"].get<double>(), kTol) << Describe(pair);
    EXPECT_NEAR(got.recall, want["recall"].get<double>(), kTol) << Describe(pair);
    EXPECT_NEAR(got.fmeasure, want["fmeasure"].get<double>(), kTol) << Describe(pair);
  }
}

TEST(TextMetricsFixtureTest, ChrfMatchesSacrebleu) {
  for (const nlohmann::json& pair : LoadFixture()["pairs"]) {
    EXPECT_NEAR(
        SentenceChrf(pair["prediction"].get<std::string>(), pair["reference"].get<std::string>()),
        pair["chrf"].get<double>(), kTol)
        << Describe(pair);
  }
}

TEST(TextMetricsFixtureTest, SentenceBleuMatchesSacrebleu) {
  for (const nlohmann::json& pair : LoadFixture()["pairs"]) {
    const std::string pred = pair["prediction"].get<std::string>();
    const std::string ref = pair["reference"].get<std::string>();
    ExpectBleuMatches(SentenceBleu(pred, ref), pair["sentence_bleu"], Describe(pair));
    const std::pair<const char*, BleuSmoothing> variants[] = {
        {"sentence_bleu_floor", BleuSmoothing::kFloor},
        {"sentence_bleu_add_k", BleuSmoothing::kAddK},
        {"sentence_bleu_none", BleuSmoothing::kNone}};
    for (const auto& [key, smoothing] : variants) {
      BleuOptions options;
      options.smoothing = smoothing;
      EXPECT_NEAR(SentenceBleu(pred, ref, options).score, pair[key].get<double>(), kTol)
          << key << " " << Describe(pair);
    }
  }
}

TEST(TextMetricsFixtureTest, SquadExactMatchAndF1MatchOfficialScript) {
  for (const nlohmann::json& pair : LoadFixture()["pairs"]) {
    const std::string pred = pair["prediction"].get<std::string>();
    const std::string ref = pair["reference"].get<std::string>();
    absl::StatusOr<bool> em = ExactMatch(pred, ref, Normalization::kSquad);
    ASSERT_TRUE(em.ok()) << em.status();
    EXPECT_EQ(*em ? 1 : 0, pair["squad_exact"].get<int>()) << Describe(pair);
    EXPECT_NEAR(TokenF1(pred, ref).f1, pair["squad_f1"].get<double>(), kTol) << Describe(pair);
  }
}

TEST(TextMetricsFixtureTest, CorpusScoresMatchSacrebleu) {
  const nlohmann::json fixture = LoadFixture();
  std::vector<std::string> hyps;
  std::vector<std::vector<std::string>> refs;
  for (const nlohmann::json& pair : fixture["pairs"]) {
    hyps.push_back(pair["prediction"].get<std::string>());
    refs.push_back({pair["reference"].get<std::string>()});
  }
  absl::StatusOr<BleuScore> bleu = CorpusBleu(hyps, refs);
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  ExpectBleuMatches(*bleu, fixture["corpus_bleu"], "corpus BLEU");
  absl::StatusOr<double> chrf = CorpusChrf(hyps, refs);
  ASSERT_TRUE(chrf.ok()) << chrf.status();
  EXPECT_NEAR(*chrf, fixture["corpus_chrf"].get<double>(), kTol);
}

TEST(TextMetricsFixtureTest, MultiReferenceMatchesSacrebleu) {
  const nlohmann::json fixture = LoadFixture();
  for (size_t i = 0; i < fixture["multi_reference"].size(); ++i) {
    const nlohmann::json& c = fixture["multi_reference"][i];
    const std::string pred = c["prediction"].get<std::string>();
    const std::vector<std::string> refs = c["references"].get<std::vector<std::string>>();
    const std::string what = absl::StrCat("multi-reference case ", i, ": \"", pred, "\"");
    absl::StatusOr<double> chrf = SentenceChrf(pred, refs);
    ASSERT_TRUE(chrf.ok()) << chrf.status();
    EXPECT_NEAR(*chrf, c["chrf"].get<double>(), kTol) << what;
    absl::StatusOr<BleuScore> bleu = SentenceBleu(pred, refs);
    ASSERT_TRUE(bleu.ok()) << bleu.status();
    ExpectBleuMatches(*bleu, c["sentence_bleu"], what);
  }
}

TEST(TextMetricsArgsTest, MismatchedCorpusSizesAreInvalidArgument) {
  const std::vector<std::string> hyps = {"a", "b"};
  const std::vector<std::vector<std::string>> refs = {{"a"}};
  EXPECT_EQ(CorpusBleu(hyps, refs).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusChrf(hyps, refs).status().code(), absl::StatusCode::kInvalidArgument);
  const std::vector<std::vector<std::string>> empty_ref = {{"a"}, {}};
  EXPECT_EQ(CorpusBleu(hyps, empty_ref).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SentenceBleu("a", std::vector<std::string>{}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SentenceChrf("a", std::vector<std::string>{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace anvil::eval
