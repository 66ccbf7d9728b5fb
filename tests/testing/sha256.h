// SHA-256 of a byte string as lowercase hex, for checking that generated files are the ones an
// oracle fixture was made from. Forwards to the library's hasher (model/sha256.h).
#ifndef ANVIL_TESTS_TESTING_SHA256_H_
#define ANVIL_TESTS_TESTING_SHA256_H_

#include <string>
#include <string_view>

#include "model/sha256.h"

namespace anvil::testing {

inline std::string Sha256Hex(std::string_view data) { return ::anvil::Sha256Hex(data); }

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_SHA256_H_
