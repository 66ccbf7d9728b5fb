#include "server/openai_errors.h"

#include <nlohmann/json.hpp>

#include "server/server_errors.h"

namespace anvil::server {
namespace {

struct Kind {
  const char* type;
  const char* code;
};

Kind KindFor(int http_status) {
  switch (http_status) {
    case 400:
      return {"invalid_request_error", "invalid_request"};
    case 401:
      return {"authentication_error", "invalid_api_key"};
    case 403:
      return {"permission_error", "permission_denied"};
    case 404:
      return {"invalid_request_error", "not_found"};
    case 405:
      return {"invalid_request_error", "method_not_allowed"};
    case 409:
      return {"invalid_request_error", "already_exists"};
    case 413:
      return {"invalid_request_error", "request_too_large"};
    case 429:
      return {"rate_limit_error", "rate_limit_exceeded"};
    case 499:
      return {"invalid_request_error", "cancelled"};
    case 501:
      return {"invalid_request_error", "not_implemented"};
    case 503:
      return {"server_error", "service_unavailable"};
    case 504:
      return {"server_error", "timeout"};
    default:
      return {"server_error", "internal_error"};
  }
}

std::string Body(int http_status, const std::string& message, const nlohmann::json& param) {
  const Kind k = KindFor(http_status);
  nlohmann::json e = {{"message", message}, {"type", k.type}, {"param", param}, {"code", k.code}};
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorJson(const absl::Status& s) {
  const std::optional<std::string> param = ParamOf(s);
  return Body(HttpStatusFor(s.code()), std::string(s.message()),
              param.has_value() ? nlohmann::json(*param) : nlohmann::json(nullptr));
}

std::string ErrorJsonFor(int http_status, const std::string& message) {
  return Body(http_status, message, nullptr);
}

}  // namespace anvil::server
