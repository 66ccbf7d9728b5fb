// The anvil command as a user runs it (a real process): help on every command, one-line errors
// with the right exit codes, and the main commands on the real model.
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"

namespace anvil {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

struct ProcResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

ProcResult Anvil(const std::string& args) {
  const std::string cmd = std::string(ANVIL_BINARY_DIR) + "/cli/anvil " + args + " 2>&1";
  ProcResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string Model() { return testing::Q41ModelPath(); }

TEST(CliTest, HelpForEveryCommand) {
  for (const char* c : {"info", "tokenize", "generate", "chat", "perplexity", "bench", "demo"}) {
    const ProcResult r = Anvil(std::string(c) + " --help");
    EXPECT_EQ(r.exit_code, 0) << c;
    EXPECT_THAT(r.out, HasSubstr(std::string("usage: anvil ") + c)) << c;
  }
  EXPECT_EQ(Anvil("--help").exit_code, 0);
}

TEST(CliTest, ErrorsAreOneLineWithExitCodes) {
  ProcResult r = Anvil("info /nonexistent/model.gguf");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, MatchesRegex("anvil info: NOT_FOUND: [^\n]*/nonexistent/model.gguf[^\n]*\n"));
  r = Anvil("info " + Model() + " --bogus");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.out, HasSubstr("unknown flag --bogus"));
  r = Anvil("generate " + Model());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("--prompt is required"));
  r = Anvil("generate " + Model() + " --prompt hi --top-p 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("INVALID_ARGUMENT: top_p"));
  r = Anvil("generate " + Model() + " --prompt hi --matmul fastest");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("INVALID_ARGUMENT: --matmul must be exact or fast, got 'fastest'"));
  r = Anvil("perplexity " + Model() + " --file /nonexistent.txt");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("NOT_FOUND"));
  r = Anvil("frobnicate");
  EXPECT_EQ(r.exit_code, 2);
  // A text file that is not GGUF is InvalidArgument, not a crash.
  r = Anvil("info /usr/share/common-licenses/GPL-3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("INVALID_ARGUMENT"));
}

TEST(CliTest, InfoPrintsTheModelCard) {
  const ProcResult r = Anvil("info " + Model());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("architecture           llama"));
  EXPECT_THAT(r.out, HasSubstr("layers                 30"));
  EXPECT_THAT(r.out, HasSubstr("chat template          chatml"));
  EXPECT_THAT(r.out, HasSubstr("You are a helpful AI assistant named SmolLM"));
  EXPECT_THAT(r.out, HasSubstr("Q4_1 x210"));
}

TEST(CliTest, TokenizeAndGenerate) {
  // llama.cpp's ids for the first oracle prompt.
  const nlohmann::json fx = nlohmann::json::parse(
      testing::ReadFileOrDie(testing::FixturePath("llamacpp_q4_1.json")));
  const nlohmann::json& prompt = fx["prompts"][0];
  std::string want;
  for (const auto& id : prompt["prompt_ids"]) {
    if (!want.empty()) want += ' ';
    want += id.dump();
  }
  ProcResult r = Anvil("tokenize " + Model() + " '" + prompt["text"].get<std::string>() +
                       "' --ids-only");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, want + "\n");
  r = Anvil("generate " + Model() + " --chat --prompt 'What is the tallest mountain in the world?' --temp 0"
            " --max-tokens 96");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("Mount Everest"));
  EXPECT_THAT(r.out, HasSubstr("tok/s decode"));
}

}  // namespace
}  // namespace anvil
