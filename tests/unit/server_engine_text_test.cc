// The engine's incremental text (server/engine_text.h): the released text never shows a partial
// stop string or a broken UTF-8 character, a completed stop string cuts the text, and a flush
// releases what was held. Generate's own streaming is the model these rules follow.
#include "server/engine_text.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace anvil::server {
namespace {

TEST(TextReleaserTest, HoldsBackPossibleStopStringPrefixes) {
  TextReleaser t({"</end>", "STOP"});
  bool stopped = false;
  EXPECT_EQ(t.Add("Hello <", &stopped), "Hello ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(t.Add("/e", &stopped), "");  // "</e" may still become "</end>"
  EXPECT_EQ(t.Add("x", &stopped), "</ex");  // it cannot any more
  EXPECT_EQ(t.Add(" ST", &stopped), " ");
  EXPECT_EQ(t.Add("OPPED", &stopped), "");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(t.released(), "Hello </ex ");
  EXPECT_EQ(t.text(), "Hello </ex ");
}

TEST(TextReleaserTest, StopStringSpanningPiecesCutsAtItsStart) {
  TextReleaser t({"\n\n"});
  bool stopped = false;
  EXPECT_EQ(t.Add("one\n", &stopped), "one");
  EXPECT_EQ(t.Add("\ntwo", &stopped), "");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(t.released(), "one");
}

TEST(TextReleaserTest, HoldsBackPartialUtf8AndFlushReleasesEverything) {
  TextReleaser t({});
  bool stopped = false;
  EXPECT_EQ(t.Add("caf\xC3", &stopped), "caf");  // half of "é"
  EXPECT_EQ(t.Add("\xA9 \xE2\x82", &stopped), "\xC3\xA9 ");
  EXPECT_EQ(t.Flush(), "\xE2\x82");  // the end of the output: released as is
  EXPECT_EQ(t.released(), "caf\xC3\xA9 \xE2\x82");
  EXPECT_EQ(t.Flush(), "");
}

TEST(TextReleaserTest, StopPrefixHoldIsTheLongestProperPrefix) {
  EXPECT_EQ(StopPrefixHold("abc", {"cde", "bcx"}), 2u);
  EXPECT_EQ(StopPrefixHold("abc", {"abc"}), 0u);  // whole stop strings are cut, not held
  EXPECT_EQ(StopPrefixHold("", {"x"}), 0u);
  EXPECT_EQ(StopPrefixHold("aaa", {"aaaa"}), 3u);
}

}  // namespace
}  // namespace anvil::server
