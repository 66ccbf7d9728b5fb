// The HTML report's layout rules, found by looking at headless-Chromium screenshots
// (scripts/eval/report-screenshot.sh): long row labels are cut from the left with the whole
// label as a tooltip and widen the label column, each metric cell puts its CI under the mean,
// and a flip table lists at most 20 examples per direction with a count of the rest.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "eval/compare.h"

namespace anvil::eval {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Comparison TwoRows(const std::string& model, size_t flips) {
  TaskComparison t;
  t.task = "ner";
  t.metrics = {"exact_match"};
  t.flip_metric = "exact_match";
  CompareCell base{true, 0.0, 0.0, 0.0, 30, false};
  CompareCell best{true, 0.75, 0.5, 0.9, 30, true};
  t.rows.push_back(CompareRow{"a.json", model, "zero_shot", {base}, {}, {}});
  CompareRow row{"b.json", "lora.gguf", "zero_shot", {best}, {}, {}};
  for (size_t i = 0; i < flips; ++i) {
    row.wrong_to_right.push_back(Flip{"id" + std::to_string(i), "x", "y", "y", 0, 1});
  }
  t.rows.push_back(row);
  Comparison c;
  c.tasks.push_back(t);
  return c;
}

TEST(EvalCompareHtmlTest, LongLabelsKeepTheirEndAndATooltip) {
  const std::string model = "/very/long/directory/name/that/goes/on/and/on/models/Small.Q4_1.gguf";
  const std::string label = model + " / zero_shot";
  ASSERT_EQ(label.size(), 80u);
  const std::string html = RenderHtml(TwoRows(model, 0));
  EXPECT_THAT(html, HasSubstr("<title>" + label + "</title>\u2026" + label.substr(80 - 63) +
                              "</text>"));
  // 64 characters at 7 units + 10: the bars start at x=458.
  EXPECT_THAT(html, HasSubstr("<rect class=\"bar best\" x=\"458\""));
  const std::string short_html = RenderHtml(TwoRows("m.gguf", 0));
  EXPECT_THAT(short_html, HasSubstr("<title>m.gguf / zero_shot</title>m.gguf / zero_shot</text>"));
  // The longest label, "lora.gguf / zero_shot", has 21 characters: 21 * 7 + 10.
  EXPECT_THAT(short_html, HasSubstr("<rect class=\"bar best\" x=\"157\""));
}

TEST(EvalCompareHtmlTest, CellsPutTheCiUnderTheMean) {
  const std::string html = RenderHtml(TwoRows("m.gguf", 0));
  EXPECT_THAT(html, HasSubstr("<td class=\"num best\">0.7500<span class=\"ci\">[0.5000, "
                              "0.9000]</span></td>"));
  EXPECT_THAT(html, HasSubstr("<td class=\"num\">0.0000<span class=\"ci\">"));
}

TEST(EvalCompareHtmlTest, FlipTablesStopAtTwenty) {
  const std::string html = RenderHtml(TwoRows("m.gguf", 23));
  EXPECT_THAT(html, HasSubstr("<td>id19</td>"));
  EXPECT_THAT(html, Not(HasSubstr("<td>id20</td>")));
  EXPECT_THAT(html, HasSubstr("&hellip; and 3 more wrong&rarr;right (all of them: anvil compare "
                              "--format json)"));
  EXPECT_THAT(RenderHtml(TwoRows("m.gguf", 20)), Not(HasSubstr("more wrong")));
}

}  // namespace
}  // namespace anvil::eval
