// Closeness checks for kernel tests: |got - want| <= atol + rtol * scale element-wise, with a
// failure message naming the worst element, its index and how many elements failed; and exact
// bitwise equality. Random data and weight builders are in kernel_data.h.
#ifndef ANVIL_TESTS_TESTING_KERNEL_CHECK_H_
#define ANVIL_TESTS_TESTING_KERNEL_CHECK_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/kernel_data.h"

namespace anvil::testing {

// Passes when every |got[i] - want[i]| <= atol + rtol * scale[i], where scale is |want| unless
// `scale` is given (e.g. a dot product's sum of |terms|).
inline ::testing::AssertionResult AllClose(const std::vector<float>& got,
                                           const std::vector<float>& want, double atol, double rtol,
                                           const std::vector<float>* scale = nullptr) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  int64_t worst = -1, failures = 0;
  double worst_excess = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double s = scale != nullptr ? (*scale)[i] : std::fabs(static_cast<double>(want[i]));
    const double tol = atol + rtol * s;
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const bool same_special =
        (std::isnan(got[i]) && std::isnan(want[i])) || (std::isinf(want[i]) && got[i] == want[i]);
    if (same_special) continue;
    if (!(err <= tol)) {
      ++failures;
      const double excess = std::isnan(err) ? INFINITY : err / tol;
      if (worst < 0 || excess > worst_excess) {
        worst = static_cast<int64_t>(i);
        worst_excess = excess;
      }
    }
  }
  if (failures == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << failures << " of " << got.size() << " elements differ; worst at index " << worst
         << ": got " << got[worst] << ", want " << want[worst] << " (error "
         << std::fabs(static_cast<double>(got[worst]) - want[worst]) << ", tolerance "
         << atol + rtol * (scale != nullptr ? (*scale)[worst] : std::fabs(want[worst])) << ")";
}

inline ::testing::AssertionResult BitEqual(const std::vector<float>& got,
                                           const std::vector<float>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure()
             << "first difference at index " << i << ": got " << got[i] << ", want " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_KERNEL_CHECK_H_
