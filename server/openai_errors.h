// The one place where an absl::Status becomes an HTTP status and OpenAI's error object,
// {"error": {"message", "type", "param", "code"}}. (gRPC needs no table: rpc/status.h maps the
// codes one to one.)
#ifndef ANVIL_SERVER_OPENAI_ERRORS_H_
#define ANVIL_SERVER_OPENAI_ERRORS_H_

#include <string>

#include "absl/status/status.h"

namespace anvil::server {

// 400 InvalidArgument/OutOfRange/FailedPrecondition, 401 Unauthenticated, 403 PermissionDenied,
// 404 NotFound, 409 AlreadyExists, 429 ResourceExhausted, 499 Cancelled, 501 Unimplemented,
// 503 Unavailable, 504 DeadlineExceeded, 500 anything else.
int HttpStatusFor(absl::StatusCode code);

// The error body for `s` (not OK). "param" is the field named by InvalidParam, else null.
std::string ErrorJson(const absl::Status& s);
// The body for an HTTP-level error that has no Status (413, 404 route, 405).
std::string ErrorJsonFor(int http_status, const std::string& message);

}  // namespace anvil::server

#endif  // ANVIL_SERVER_OPENAI_ERRORS_H_
