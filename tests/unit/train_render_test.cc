// Rendering records into token sequences and loss targets: exact tokens on the tiny model's
// ChatML vocabulary, masks for each template family, segment-vs-whole tokenization agreement,
// multi-turn, truncation, packing, preference pairs, the real SmolLM2 template (when present)
// and the output of scripts/data/make_ner.py.
#include "train/render.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/tiny_model.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"
#include "train/dataset.h"

namespace anvil::train {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<int32_t>;

// The text of each maximal run of trained tokens (the token at j is trained if targets[j-1]>=0).
std::vector<std::string> TrainedText(const Tokenizer& tok, const SequenceExample& e) {
  std::vector<std::string> runs;
  bool in_run = false;
  for (size_t j = 1; j < e.tokens.size(); ++j) {
    const bool trained = e.targets[j - 1] >= 0;
    if (trained) {
      EXPECT_EQ(e.targets[j - 1], e.tokens[j]) << "position " << j - 1;
      if (!in_run) runs.emplace_back();
      runs.back() += tok.TokenToPiece(e.tokens[j]);
    }
    in_run = trained;
  }
  EXPECT_EQ(e.targets.back(), -1);
  return runs;
}

ChatRecord Chat(std::vector<ChatMessage> messages, size_t completion_start = 0) {
  ChatRecord r;
  r.messages = std::move(messages);
  r.completion_start = completion_start;
  r.line = 1;
  return r;
}

class TinyRenderTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto bytes = MakeTinyLlamaGguf({});
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    gguf_ = new std::string(*std::move(bytes));
    auto file = gguf::GgufFile::FromBuffer(
        "tiny.gguf", absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(gguf_->data()),
                                         gguf_->size()));
    ASSERT_TRUE(file.ok()) << file.status();
    auto vocab = LoadVocab(**file);
    ASSERT_TRUE(vocab.ok()) << vocab.status();
    auto tok = Tokenizer::Create(*vocab);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = tok->release();
    auto src = (*file)->GetString("tokenizer.chat_template");
    ASSERT_TRUE(src.ok()) << src.status();
    auto tmpl = ChatTemplate::FromJinja(*src, "<|im_start|>", "<|im_end|>");
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    tmpl_ = new ChatTemplate(*tmpl);
  }
  void SetUp() override { ASSERT_NE(tok_, nullptr); }
  static int32_t Id(const char* text) { return tok_->FindToken(text); }

  static inline std::string* gguf_ = nullptr;
  static inline Tokenizer* tok_ = nullptr;
  static inline ChatTemplate* tmpl_ = nullptr;
};

TEST_F(TinyRenderTest, ExactTokensAndTargets) {
  const ChatRenderer r(*tok_, *tmpl_);
  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample e,
                             r.Render(Chat({{"user", "Hi"}, {"assistant", "Yo"}}),
                                      LossMask::kCompletion));
  const int32_t s = Id("<|im_start|>"), end = Id("<|im_end|>");
  ASSERT_EQ(s, 305);
  ASSERT_EQ(end, 306);
  // <|im_start|> u s er \n H i <|im_end|> \n <|im_start|> as s is t an t \n Y o <|im_end|> \n
  // (ids 0..255 are bytes; 256 + k is merge k: "er" 261, "is" 272, "an" 265).
  EXPECT_EQ(e.tokens, (Ids{305, 'u', 's', 261, '\n', 'H', 'i', 306, '\n', 305, 'a', 's', 's',
                           272, 't', 265, 't', '\n', 'Y', 'o', 306, '\n'}));
  Ids targets(e.tokens.size(), -1);
  targets[17] = 'Y';  // "\n" after "assistant" predicts the first answer token
  targets[18] = 'o';
  targets[19] = 306;  // <|im_end|> is trained; the "\n" after it is not
  EXPECT_EQ(e.targets, targets);
  EXPECT_EQ(e.source_line, 1);
  EXPECT_EQ(tok_->Decode(e.tokens), *tmpl_->Render({{"user", "Hi"}, {"assistant", "Yo"}}, false));

  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample lm,
                             r.Render(Chat({{"user", "Hi"}, {"assistant", "Yo"}}),
                                      LossMask::kAllTokens));
  EXPECT_EQ(lm.tokens, e.tokens);
  for (size_t i = 0; i + 1 < lm.tokens.size(); ++i) EXPECT_EQ(lm.targets[i], lm.tokens[i + 1]);
  EXPECT_EQ(lm.targets.back(), -1);
}

TEST_F(TinyRenderTest, MultiTurnTrainsEveryAssistantTurn) {
  const ChatRenderer r(*tok_, *tmpl_);
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const SequenceExample e,
      r.Render(Chat({{"system", "Be brief."},
                     {"user", "What is 2+2?"},
                     {"assistant", "4"},
                     {"user", "And the capital of France?"},
                     {"assistant", " Paris, of course."}}),
               LossMask::kCompletion));
  EXPECT_THAT(TrainedText(*tok_, e), ElementsAre("4<|im_end|>", " Paris, of course.<|im_end|>"));
  // prompt/completion: a conversational prompt's own assistant turn is context, not target.
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const SequenceExample pc,
      r.Render(Chat({{"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}}, 3),
               LossMask::kCompletion));
  EXPECT_THAT(TrainedText(*tok_, pc), ElementsAre("d<|im_end|>"));
}

TEST_F(TinyRenderTest, EveryFamilyTrainsTheAnswerAndItsEndOfTurn) {
  const std::vector<ChatMessage> chat = {{"user", "Hi"}, {"assistant", "Yo"}};
  const struct {
    ChatTemplate tmpl;
    const char* trained;
  } cases[] = {
      {ChatTemplate::ForFamily(ChatFamily::kLlama2, "<s>", "</s>"), " Yo </s>"},
      {ChatTemplate::ForFamily(ChatFamily::kMistral, "<s>", "</s>"), "Yo</s>"},
      {*ChatTemplate::FromJinja("mistral eos_token + ' '", "<s>", "</s>"), "Yo</s>"},
      {ChatTemplate::ForFamily(ChatFamily::kZephyr, "<s>", "</s>"), "Yo</s>"},
      {ChatTemplate::ForFamily(ChatFamily::kGemma, "<bos>", "<eos>"), "Yo<end_of_turn>"},
      {ChatTemplate::ForFamily(ChatFamily::kPhi3, "<s>", "<|endoftext|>"), "Yo<|end|>"},
  };
  for (const auto& c : cases) {
    const ChatRenderer r(*tok_, c.tmpl);
    ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample e,
                               r.Render(Chat(chat), LossMask::kCompletion));
    EXPECT_THAT(TrainedText(*tok_, e), ElementsAre(c.trained)) << ChatFamilyName(c.tmpl.family());
    // Phi-3 closes the whole chat with eos after the last turn: not trained in SFT.
    ANVIL_ASSERT_OK_AND_ASSIGN(
        const SequenceExample two,
        r.Render(Chat({{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Again"}, {"assistant", "Ok"}}),
                 LossMask::kCompletion));
    EXPECT_EQ(TrainedText(*tok_, two).size(), 2u) << ChatFamilyName(c.tmpl.family());
  }
  // A family that refuses the conversation: the template's error comes back.
  const ChatTemplate gemma = ChatTemplate::ForFamily(ChatFamily::kGemma, "<bos>", "<eos>");
  EXPECT_THAT(ChatRenderer(*tok_, gemma)
                  .Render(Chat({{"system", "S"}, {"user", "Hi"}, {"assistant", "Yo"}}),
                          LossMask::kCompletion),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("system")));
}

TEST_F(TinyRenderTest, SegmentTokenizationAgreesWithInferenceOrFails) {
  const ChatRenderer r(*tok_, *tmpl_);
  // Answers whose first or last bytes would merge across the boundary differently are refused.
  for (const char* bad : {"\n\nfoo", "\n\n\nbar"}) {
    EXPECT_THAT(r.Render(Chat({{"user", "q"}, {"assistant", bad}}), LossMask::kCompletion),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("straddle")))
        << bad;
  }
  // Ordinary answers (punctuation, digits, spaces, UTF-8, JSON) agree: the renderer checks it,
  // and decoding gives back the rendered text.
  for (const char* good :
       {"Hello there.", " leading space", "{\"people\": [\"Ana\"], \"places\": []}", "42 and 7",
        "caf\xC3\xA9 \xE2\x82\xAC", "line one\nline two", "ends with newline\n", "tab\there"}) {
    const ChatRecord chat = Chat({{"user", "q"}, {"assistant", good}});
    ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample e, r.Render(chat, LossMask::kCompletion));
    EXPECT_EQ(e.tokens, tok_->Encode(*tmpl_->Render(chat.messages, false), true, true)) << good;
    EXPECT_THAT(TrainedText(*tok_, e), ElementsAre(std::string(good) + "<|im_end|>"));
  }
  // The dataset-level error names the file and line.
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const Dataset d,
      ParseJsonl("{\"prompt\": \"q\", \"completion\": \"ok\"}\n"
                 "{\"prompt\": \"q\", \"completion\": \"\\n\\nfoo\"}\n",
                 "b.jsonl"));
  EXPECT_THAT(RenderSftDataset(d, r, {}, nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("b.jsonl:2: tokenizing")));
}

TEST_F(TinyRenderTest, TruncationKeepsTheStartAndCountsDrops) {
  const ChatRenderer r(*tok_, *tmpl_);
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const Dataset d,
      ParseJsonl("{\"prompt\": \"q\", \"completion\": \"a fairly long answer here\"}\n"
                 "{\"prompt\": \"" + std::string(200, 'x') + "\", \"completion\": \"lost\"}\n"
                 "{\"prompt\": \"q\", \"completion\": \"ok\"}\n",
                 "t.jsonl"));
  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample whole, r.Render(d.chats[0], LossMask::kCompletion));
  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample fits, r.Render(d.chats[2], LossMask::kCompletion));
  const int64_t max_length = static_cast<int64_t>(fits.tokens.size());  // the third just fits
  ASSERT_GT(whole.tokens.size(), fits.tokens.size() + 3);
  RenderStats stats;
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<SequenceExample> out,
                             RenderSftDataset(d, r, {LossMask::kCompletion, max_length}, &stats));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].source_line, 1);
  EXPECT_EQ(out[1].source_line, 3);
  EXPECT_EQ(out[1].tokens, fits.tokens);
  ASSERT_EQ(out[0].tokens.size(), static_cast<size_t>(max_length));
  EXPECT_TRUE(std::equal(out[0].tokens.begin(), out[0].tokens.end(), whole.tokens.begin()));
  EXPECT_TRUE(std::equal(out[0].targets.begin(), out[0].targets.end() - 1, whole.targets.begin()));
  EXPECT_EQ(out[0].targets.back(), -1);
  EXPECT_EQ(stats.records, 3);
  EXPECT_EQ(stats.examples, 2);
  EXPECT_EQ(stats.truncated, 1);
  EXPECT_EQ(stats.dropped_no_target, 1);
  EXPECT_THAT(stats.Summary(), HasSubstr("1 dropped"));
  ANVIL_ASSERT_OK_AND_ASSIGN(SequenceExample lost, r.Render(d.chats[1], LossMask::kCompletion));
  EXPECT_FALSE(TruncateExample(&lost, max_length));
}

TEST_F(TinyRenderTest, PackingFillsRowsWithoutCrossingExamples) {
  const ChatRenderer r(*tok_, *tmpl_);
  std::vector<SequenceExample> examples;
  for (const char* answer : {"a", "bb bb", "ccc ccc ccc", "d", "the end of it all"}) {
    ANVIL_ASSERT_OK_AND_ASSIGN(SequenceExample e,
                               r.Render(Chat({{"user", "q"}, {"assistant", answer}}),
                                        LossMask::kCompletion));
    examples.push_back(std::move(e));
  }
  const int64_t kLen = 48;
  const int32_t pad = PaddingToken(*tok_);
  EXPECT_EQ(pad, Id("<|im_end|>"));  // the tiny model's padding token
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<SequenceExample> rows,
                             PackExamples(examples, kLen, pad));
  size_t total = 0, trained = 0, rows_tokens = 0, rows_trained = 0;
  for (const SequenceExample& e : examples) {
    total += e.tokens.size();
    trained += std::count_if(e.targets.begin(), e.targets.end(), [](int32_t t) { return t >= 0; });
  }
  for (const SequenceExample& row : rows) {
    ASSERT_EQ(row.tokens.size(), static_cast<size_t>(kLen));
    ASSERT_EQ(row.targets.size(), static_cast<size_t>(kLen));
    EXPECT_EQ(row.source_line, 0);
    EXPECT_EQ(row.targets.back(), -1);
    size_t n = kLen;
    while (n > 0 && row.tokens[n - 1] == pad && row.targets[n - 1] == -1) --n;
    rows_tokens += n;
    for (size_t i = 0; i < kLen; ++i) {
      if (row.targets[i] < 0) continue;
      ++rows_trained;
      EXPECT_EQ(row.targets[i], row.tokens[i + 1]);
      // A target never points at the <|im_start|> that opens the next example.
      EXPECT_NE(row.tokens[i + 1], Id("<|im_start|>"));
    }
  }
  // Every example is intact (each ends in "\n", not the pad token, so trimming stops there).
  EXPECT_EQ(rows_tokens, total);
  EXPECT_EQ(rows_trained, trained);
  EXPECT_LT(rows.size(), examples.size());
  ANVIL_ASSERT_OK_AND_ASSIGN(const auto again, PackExamples(examples, kLen, pad));
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(again[i].tokens, rows[i].tokens);
  EXPECT_THAT(PackExamples(examples, 10, pad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_length is 10")));
}

TEST_F(TinyRenderTest, PreferencePairsShareThePromptAndTrainTheAnswers) {
  const ChatRenderer r(*tok_, *tmpl_);
  ANVIL_ASSERT_OK_AND_ASSIGN(
      const Dataset d,
      ParseJsonl("{\"prompt\": \"Who?\", \"chosen\": \"Ana\", \"rejected\": \"Lisbon, I think\"}\n"
                 "{\"prompt\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", "
                 "\"content\": \"u\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": "
                 "\"x\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \"y\"}]}\n",
                 "p.jsonl"));
  RenderStats stats;
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<PreferenceExample> pairs,
                             RenderPreferenceDataset(d, r, {}, &stats));
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0].source_line, 1);
  EXPECT_THAT(TrainedText(*tok_, pairs[0].chosen), ElementsAre("Ana<|im_end|>"));
  EXPECT_THAT(TrainedText(*tok_, pairs[0].rejected), ElementsAre("Lisbon, I think<|im_end|>"));
  const std::string prompt = *tmpl_->Render({{"user", "Who?"}}, true);
  const Ids prompt_ids = tok_->Encode(prompt, true, true);
  for (const SequenceExample* e : {&pairs[0].chosen, &pairs[0].rejected}) {
    ASSERT_GT(e->tokens.size(), prompt_ids.size());
    EXPECT_TRUE(std::equal(prompt_ids.begin(), prompt_ids.end(), e->tokens.begin()));
    for (size_t i = 0; i + 1 < prompt_ids.size(); ++i) EXPECT_EQ(e->targets[i], -1);
  }
  EXPECT_EQ(stats.examples, 2);
  // A pair whose answer is cut away entirely is dropped and counted.
  RenderStats tight;
  ANVIL_ASSERT_OK_AND_ASSIGN(const auto kept, RenderPreferenceDataset(d, r, {LossMask::kCompletion, 8}, &tight));
  EXPECT_EQ(kept.size() + tight.dropped_no_target, 2u);
  EXPECT_GE(tight.dropped_no_target, 1);
  // Each kind of data goes to its own renderer.
  EXPECT_THAT(RenderSftDataset(d, r, {}, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  ANVIL_ASSERT_OK_AND_ASSIGN(const Dataset sft,
                             ParseJsonl("{\"prompt\": \"q\", \"completion\": \"a\"}", "s.jsonl"));
  EXPECT_THAT(RenderPreferenceDataset(sft, r, {}, nullptr),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

// --- The real SmolLM2 template and vocabulary ---------------------------------------------

// The tokenizer and template of the real model, loaded once; null when the file is absent.
struct SmolLM2 {
  std::unique_ptr<Tokenizer> tok;
  std::optional<ChatTemplate> tmpl;
};
const SmolLM2* LoadSmolLM2() {
  static const SmolLM2* const kModel = []() -> const SmolLM2* {
    const std::string path = testing::Q41ModelPath();
    if (!std::ifstream(path).good()) return nullptr;
    auto file = gguf::GgufFile::Open(path);
    auto vocab = file.ok() ? LoadVocab(**file) : file.status();
    auto tok = vocab.ok() ? Tokenizer::Create(*vocab) : vocab.status();
    auto src = file.ok() ? (*file)->GetString("tokenizer.chat_template") : file.status();
    if (!tok.ok() || !src.ok()) {
      ADD_FAILURE() << path << ": " << tok.status() << " " << src.status();
      return nullptr;
    }
    auto* m = new SmolLM2{*std::move(tok), std::nullopt};
    auto tmpl = ChatTemplate::FromJinja(*src, std::string(m->tok->TokenText(m->tok->bos_id())),
                                        std::string(m->tok->TokenText(m->tok->eos_id())));
    EXPECT_TRUE(tmpl.ok()) << tmpl.status();
    if (tmpl.ok()) m->tmpl = *tmpl;
    return m;
  }();
  return kModel;
}

TEST(SmolLM2RenderTest, DefaultSystemPromptIsContextAndAnswerIsTrained) {
  const SmolLM2* m = LoadSmolLM2();
  if (m == nullptr) GTEST_SKIP() << "model not found: " << testing::Q41ModelPath();
  ASSERT_TRUE(m->tmpl.has_value());
  const Tokenizer* tok = m->tok.get();
  const ChatTemplate& tmpl = *m->tmpl;
  ASSERT_FALSE(tmpl.default_system_prompt().empty());
  const ChatRenderer r(*tok, tmpl);
  const ChatRecord chat = Chat({{"user", "Extract the people and places.\n\nAna met Bo in Oslo."},
                                {"assistant", "{\"people\": [\"Ana\", \"Bo\"], \"places\": [\"Oslo\"]}"},
                                {"user", "Thanks!"},
                                {"assistant", "You are welcome."}});
  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample e, r.Render(chat, LossMask::kCompletion));
  EXPECT_EQ(e.tokens, tok->Encode(*tmpl.Render(chat.messages, false), true, true));
  EXPECT_THAT(tok->Decode(e.tokens), HasSubstr(tmpl.default_system_prompt()));
  EXPECT_THAT(TrainedText(*tok, e),
              ElementsAre("{\"people\": [\"Ana\", \"Bo\"], \"places\": [\"Oslo\"]}<|im_end|>",
                          "You are welcome.<|im_end|>"));
}

TEST(SmolLM2RenderTest, BpeDropoutResegmentsButTrainsTheSameText) {
  const SmolLM2* m = LoadSmolLM2();
  if (m == nullptr) GTEST_SKIP() << "model not found: " << testing::Q41ModelPath();
  ASSERT_TRUE(m->tmpl.has_value());
  const ChatRenderer r(*m->tok, *m->tmpl);
  const std::string answer = "{\"people\": [\"Valentina\"], \"places\": [\"Manila\", \"Beijing\"]}";
  const ChatRecord chat =
      Chat({{"user", "Extract the people and places.\n\nValentina flew from Manila to Beijing."},
            {"assistant", answer}});
  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample plain, r.Render(chat, LossMask::kCompletion));
  MergeDropout off{0.0, 5};
  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample same,
                             r.Render(chat, LossMask::kCompletion, &off));
  EXPECT_EQ(same.tokens, plain.tokens);
  MergeDropout d{0.3, 5};
  ANVIL_ASSERT_OK_AND_ASSIGN(const SequenceExample e, r.Render(chat, LossMask::kCompletion, &d));
  EXPECT_GT(e.tokens.size(), plain.tokens.size());
  EXPECT_EQ(m->tok->Decode(e.tokens), m->tok->Decode(plain.tokens));
  EXPECT_THAT(TrainedText(*m->tok, e), ElementsAre(answer + "<|im_end|>"));
  // The chat's control tokens stay whole.
  EXPECT_EQ(std::count(e.tokens.begin(), e.tokens.end(), m->tok->bos_id()),
            std::count(plain.tokens.begin(), plain.tokens.end(), m->tok->bos_id()));
}

// --- scripts/data/make_ner.py ---------------------------------------------------------------

std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST_F(TinyRenderTest, MakeNerOutputLoadsAndRenders) {
  if (std::system("python3 --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "no python3";
  const std::string script = testing::FixturePath("../../scripts/data/make_ner.py");
  const std::string dir = ::testing::TempDir() + "/train_render_ner";
  std::filesystem::remove_all(dir);
  for (const char* sub : {"/a", "/b"}) {
    const std::string cmd = "python3 " + script + " --out " + dir + sub +
                            " --seed 7 --train 200 --dev 40 --test 40 > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  for (const char* f : {"train.jsonl", "dev.jsonl", "test.jsonl", "train_pref.jsonl"}) {
    EXPECT_EQ(Lines(dir + "/a/" + f), Lines(dir + "/b/" + f)) << f << " is not deterministic";
  }
  EXPECT_EQ(Lines(dir + "/a/train.jsonl").size(), 200u);
  EXPECT_EQ(Lines(dir + "/a/test.jsonl").size(), 40u);

  const ChatRenderer r(*tok_, *tmpl_);
  std::map<std::string, std::set<std::string>> entities;  // split -> names
  for (const char* split : {"train", "dev", "test"}) {
    ANVIL_ASSERT_OK_AND_ASSIGN(const Dataset d,
                               ReadJsonlFile(dir + "/a/" + split + ".jsonl"));
    RenderStats stats;
    ANVIL_ASSERT_OK_AND_ASSIGN(const auto examples, RenderSftDataset(d, r, {}, &stats));
    EXPECT_EQ(stats.dropped_no_target, 0) << split;
    EXPECT_EQ(examples.size(), d.chats.size()) << split;
    for (const ChatRecord& c : d.chats) {
      const auto answer = nlohmann::json::parse(c.messages.back().content);
      ASSERT_TRUE(answer.contains("people") && answer.contains("places"));
      for (const char* key : {"people", "places"}) {
        for (const auto& name : answer[key]) {
          EXPECT_THAT(c.messages[c.messages.size() - 2].content, HasSubstr(name.get<std::string>()));
          entities[split].insert(name.get<std::string>());
        }
      }
    }
  }
  for (const char* held_out : {"dev", "test"}) {
    for (const std::string& name : entities[held_out]) {
      EXPECT_EQ(entities["train"].count(name), 0u) << name << " is in train and " << held_out;
    }
  }
  // The same data through the real model's tokenizer and template, when it is here: every
  // record renders (no boundary disagreement) and fits the recipes' max_length of 256.
  if (const SmolLM2* m = LoadSmolLM2(); m != nullptr && m->tmpl.has_value()) {
    const ChatRenderer smol(*m->tok, *m->tmpl);
    for (const char* split : {"train", "dev", "test"}) {
      ANVIL_ASSERT_OK_AND_ASSIGN(const Dataset d, ReadJsonlFile(dir + "/a/" + split + ".jsonl"));
      RenderStats stats;
      ANVIL_ASSERT_OK_AND_ASSIGN(const auto examples,
                                 RenderSftDataset(d, smol, {LossMask::kCompletion, 256}, &stats));
      EXPECT_EQ(stats.truncated, 0) << split;
      EXPECT_EQ(examples.size(), d.chats.size()) << split;
    }
  }
  ANVIL_ASSERT_OK_AND_ASSIGN(const Dataset pref, ReadJsonlFile(dir + "/a/train_pref.jsonl"));
  EXPECT_EQ(pref.kind, DatasetKind::kPreference);
  ANVIL_ASSERT_OK_AND_ASSIGN(const auto pairs, RenderPreferenceDataset(pref, r, {}, nullptr));
  EXPECT_EQ(pairs.size(), pref.preferences.size());
  for (const PreferenceRecord& p : pref.preferences) {
    EXPECT_NE(p.chosen[0].content, p.rejected[0].content) << "line " << p.line;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace anvil::train
