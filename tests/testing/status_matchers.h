// GoogleTest matchers for absl::Status / StatusOr, which our abseil lacks:
//   EXPECT_THAT(s, IsOk());  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument));
//   EXPECT_THAT(s, StatusIs(absl::StatusCode::kNotFound, HasSubstr("tensor")));
#ifndef ANVIL_TESTS_TESTING_STATUS_MATCHERS_H_
#define ANVIL_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"

namespace anvil::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& s = GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s;
  return s.ok();
}

MATCHER_P(StatusIs, code, "has status code " + std::string(absl::StatusCodeToString(code))) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s;
  return s.code() == code;
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has status code " + std::string(absl::StatusCodeToString(code))) {
  const absl::Status& s = GetStatus(arg);
  *result_listener << "status: " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(s.message()),
                                       result_listener);
}

}  // namespace anvil::testing

// Asserts that a StatusOr is OK and moves its value into `lhs`.
#define ANVIL_ASSERT_OK_AND_ASSIGN(lhs, rexpr)                                     \
  ANVIL_ASSERT_OK_AND_ASSIGN_IMPL_(ANVIL_TEST_CONCAT_(anvil_sor_, __LINE__), lhs, rexpr)
#define ANVIL_TEST_CONCAT_INNER_(a, b) a##b
#define ANVIL_TEST_CONCAT_(a, b) ANVIL_TEST_CONCAT_INNER_(a, b)
#define ANVIL_ASSERT_OK_AND_ASSIGN_IMPL_(sor, lhs, rexpr) \
  auto sor = (rexpr);                                     \
  ASSERT_TRUE(sor.ok()) << sor.status();                  \
  lhs = std::move(sor).value()

#endif  // ANVIL_TESTS_TESTING_STATUS_MATCHERS_H_
