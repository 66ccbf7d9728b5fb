// The official openai Python client (pinned, build/openai-venv, made by scripts/setup.sh)
// against a real anvil-server: tests/python/openai_client.py completes a chat, streams one,
// streams a completion and reads embeddings, with exact checks. Skips, saying why, when the
// venv is absent.
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "tests/testing/server_harness.h"

namespace anvil::testing {
namespace {

TEST(ServerOpenAiClientTest, OfficialClientChatsStreamsAndEmbeds) {
  const std::string py = std::string(ANVIL_SOURCE_DIR) + "/build/openai-venv/bin/python";
  if (!std::filesystem::exists(py)) {
    GTEST_SKIP() << py << " is missing: run scripts/setup.sh's anvil_ensure_openai_venv "
                          "(scripts/test.sh does)";
  }
  int rc = 0;
  RunShell(py + " -c 'import openai'", &rc);
  if (rc != 0) GTEST_SKIP() << "the openai package is not installed in " << py;
  auto s = ServerProcess::Start(MakeTempDir("server_openai"), /*with_token=*/true);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string cmd = absl::StrCat(
      py, " ", ANVIL_SOURCE_DIR, "/tests/python/openai_client.py --base-url http://127.0.0.1:",
      (*s)->http_port, "/v1 --api-key ", (*s)->token, " --model SmolLM2-135M-Instruct.Q4_1");
  const std::string out = RunShell(cmd, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
}

}  // namespace
}  // namespace anvil::testing
