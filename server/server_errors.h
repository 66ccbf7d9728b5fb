// Request errors that name the offending field: an InvalidArgument status carrying the field
// ("param" in OpenAI's error object) as a status payload, so the core can say which field was
// wrong and the HTTP layer can put it in {"error": {"param": ...}} without parsing messages.
#ifndef ANVIL_SERVER_SERVER_ERRORS_H_
#define ANVIL_SERVER_SERVER_ERRORS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace anvil::server {

inline constexpr char kParamPayloadUrl[] = "type.anvil.dev/param";

// InvalidArgument "<param>: <message>", with `param` attached.
// (absl::string_view: this abseil's is its own type, not std::string_view.)
inline absl::Status InvalidParam(absl::string_view param, absl::string_view message) {
  absl::Status s = absl::InvalidArgumentError(absl::StrCat(param, ": ", message));
  s.SetPayload(kParamPayloadUrl, absl::Cord(param));
  return s;
}

// The field an error names, if any.
inline std::optional<std::string> ParamOf(const absl::Status& s) {
  const auto p = s.GetPayload(kParamPayloadUrl);
  if (!p.has_value()) return std::nullopt;
  return std::string(*p);
}

}  // namespace anvil::server

#endif  // ANVIL_SERVER_SERVER_ERRORS_H_
