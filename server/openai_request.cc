#include "server/openai_request.h"

#include <cmath>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "server/server_errors.h"

namespace anvil::server {
namespace {

using Json = nlohmann::json;

absl::StatusOr<Json> ParseObject(std::string_view body) {
  Json j;
  try {
    j = Json::parse(body.begin(), body.end());
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request body is not valid JSON (at byte ", e.byte, "): ", e.what()));
  }
  if (!j.is_object()) return absl::InvalidArgumentError("the request body must be a JSON object");
  return j;
}

// The field, or nullptr when absent or null (OpenAI treats null as "not given").
const Json* Field(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

const char* TypeName(const Json& v) { return v.type_name(); }

absl::Status GetString(const Json& j, const char* key, std::string* out) {
  const Json* v = Field(j, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_string()) return InvalidParam(key, absl::StrCat("must be a string, got ", TypeName(*v)));
  *out = v->get<std::string>();
  return absl::OkStatus();
}

absl::Status GetBool(const Json& j, const char* key, bool* out) {
  const Json* v = Field(j, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_boolean()) return InvalidParam(key, absl::StrCat("must be a boolean, got ", TypeName(*v)));
  *out = v->get<bool>();
  return absl::OkStatus();
}

// An integer in [lo, hi]. JSON numbers with a fraction or an exponent are not integers.
absl::StatusOr<std::optional<int64_t>> GetInt(const Json& j, const char* key, int64_t lo,
                                              int64_t hi) {
  const Json* v = Field(j, key);
  if (v == nullptr) return std::optional<int64_t>();
  if (!v->is_number_integer()) {
    return InvalidParam(key, absl::StrCat("must be an integer, got ", TypeName(*v),
                                          v->is_number() ? " " + v->dump() : ""));
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
    return InvalidParam(key, absl::StrCat("must be at most ", hi, ", got ", v->dump()));
  }
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) {
    return InvalidParam(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", x));
  }
  return std::optional<int64_t>(x);
}

absl::Status GetInt32(const Json& j, const char* key, int64_t lo, int64_t hi,
                      std::optional<int32_t>* out) {
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> v, GetInt(j, key, lo, hi));
  if (v.has_value()) *out = static_cast<int32_t>(*v);
  return absl::OkStatus();
}

// A finite number in [lo, hi].
absl::Status GetFloat(const Json& j, const char* key, double lo, double hi,
                      std::optional<float>* out) {
  const Json* v = Field(j, key);
  if (v == nullptr) return absl::OkStatus();
  if (!v->is_number()) return InvalidParam(key, absl::StrCat("must be a number, got ", TypeName(*v)));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    return InvalidParam(key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", v->dump()));
  }
  *out = static_cast<float>(x);
  return absl::OkStatus();
}

// Fields we do not implement: an error when given a value that would change the result.
absl::Status RejectUnsupported(const Json& j) {
  for (const char* key : {"logit_bias", "tools", "tool_choice", "functions", "function_call",
                          "suffix", "logit_bias", "prediction", "audio", "modalities"}) {
    if (Field(j, key) != nullptr) return InvalidParam(key, "is not supported by this server");
  }
  for (const char* key : {"frequency_penalty", "presence_penalty"}) {
    std::optional<float> v;
    ANVIL_RETURN_IF_ERROR(GetFloat(j, key, -2, 2, &v));
    if (v.has_value() && *v != 0) {
      return InvalidParam(key, "is not supported (only 0); use repeat_penalty instead");
    }
  }
  bool echo = false;
  ANVIL_RETURN_IF_ERROR(GetBool(j, "echo", &echo));
  if (echo) return InvalidParam("echo", "is not supported");
  std::optional<int32_t> best_of;
  ANVIL_RETURN_IF_ERROR(GetInt32(j, "best_of", 1, 1, &best_of));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> TokenArray(const Json& a, const char* key) {
  std::vector<int32_t> out;
  for (const Json& t : a) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 ||
        t.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return InvalidParam(key, absl::StrCat("token ids must be non-negative integers, got ",
                                            t.dump()));
    }
    out.push_back(t.get<int32_t>());
  }
  return out;
}

absl::Status ParsePrompt(const Json& j, CompletionRequest* r) {
  const Json* p = Field(j, "prompt");
  if (p == nullptr) return InvalidParam("prompt", "is required");
  if (p->is_string()) {
    r->prompt = p->get<std::string>();
    return absl::OkStatus();
  }
  if (!p->is_array() || p->empty()) {
    return InvalidParam("prompt", "must be a string, an array of token ids, or an array of one");
  }
  const Json& first = (*p)[0];
  if (first.is_number_integer()) {
    ANVIL_ASSIGN_OR_RETURN(r->prompt_tokens, TokenArray(*p, "prompt"));
    return absl::OkStatus();
  }
  if (p->size() != 1) return InvalidParam("prompt", "only one prompt per request is supported");
  if (first.is_string()) {
    r->prompt = first.get<std::string>();
    return absl::OkStatus();
  }
  if (first.is_array()) {
    ANVIL_ASSIGN_OR_RETURN(r->prompt_tokens, TokenArray(first, "prompt"));
    return absl::OkStatus();
  }
  return InvalidParam("prompt", absl::StrCat("unexpected element type ", TypeName(first)));
}

absl::Status ParseMessages(const Json& j, CompletionRequest* r) {
  const Json* m = Field(j, "messages");
  if (m == nullptr) return InvalidParam("messages", "is required");
  if (!m->is_array() || m->empty()) return InvalidParam("messages", "must be a non-empty array");
  for (size_t i = 0; i < m->size(); ++i) {
    const Json& msg = (*m)[i];
    const std::string where = absl::StrCat("messages[", i, "]");
    if (!msg.is_object()) return InvalidParam(where, "must be an object");
    ChatMessage cm;
    const Json* role = Field(msg, "role");
    if (role == nullptr || !role->is_string()) return InvalidParam(where + ".role", "must be a string");
    cm.role = role->get<std::string>();
    if (cm.role == "developer") cm.role = "system";  // OpenAI's newer name for it
    const Json* content = Field(msg, "content");
    if (content == nullptr) {
      // An assistant turn may have no content; nothing else may.
      if (cm.role != "assistant") return InvalidParam(where + ".content", "is required");
    } else if (content->is_string()) {
      cm.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (const Json& part : *content) {
        const Json* type = part.is_object() ? Field(part, "type") : nullptr;
        const Json* text = part.is_object() ? Field(part, "text") : nullptr;
        if (type == nullptr || *type != "text" || text == nullptr || !text->is_string()) {
          return InvalidParam(where + ".content", "only text parts ({\"type\": \"text\", "
                                                  "\"text\": ...}) are supported");
        }
        cm.content += text->get<std::string>();
      }
    } else {
      return InvalidParam(where + ".content", "must be a string or an array of text parts");
    }
    r->messages.push_back(std::move(cm));
  }
  return absl::OkStatus();
}

absl::Status ParseStop(const Json& j, std::vector<std::string>* stop) {
  const Json* s = Field(j, "stop");
  if (s == nullptr) return absl::OkStatus();
  if (s->is_string()) {
    stop->push_back(s->get<std::string>());
    return absl::OkStatus();
  }
  if (!s->is_array()) return InvalidParam("stop", "must be a string or an array of strings");
  for (const Json& x : *s) {
    if (!x.is_string()) return InvalidParam("stop", "must be a string or an array of strings");
    stop->push_back(x.get<std::string>());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view body, bool chat,
                                                         const CompletionLimits& limits) {
  ANVIL_ASSIGN_OR_RETURN(Json j, ParseObject(body));
  CompletionRequest r;
  r.chat = chat;
  ANVIL_RETURN_IF_ERROR(RejectUnsupported(j));
  ANVIL_RETURN_IF_ERROR(GetString(j, "model", &r.model));
  ANVIL_RETURN_IF_ERROR(chat ? ParseMessages(j, &r) : ParsePrompt(j, &r));
  GenerationParams& p = r.params;
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  ANVIL_RETURN_IF_ERROR(GetInt32(j, "max_tokens", 1, kIntMax, &p.max_tokens));
  if (chat) {
    std::optional<int32_t> mct;
    ANVIL_RETURN_IF_ERROR(GetInt32(j, "max_completion_tokens", 1, kIntMax, &mct));
    if (mct.has_value()) p.max_tokens = mct;
  }
  ANVIL_RETURN_IF_ERROR(ParseStop(j, &p.stop));
  ANVIL_RETURN_IF_ERROR(GetFloat(j, "temperature", 0, 2, &p.temperature));
  ANVIL_RETURN_IF_ERROR(GetFloat(j, "top_p", 0, 1, &p.top_p));
  ANVIL_RETURN_IF_ERROR(GetFloat(j, "min_p", 0, 1, &p.min_p));
  ANVIL_RETURN_IF_ERROR(GetFloat(j, "repeat_penalty", 1e-6, 1e6, &p.repeat_penalty));
  ANVIL_RETURN_IF_ERROR(GetInt32(j, "top_k", 0, kIntMax, &p.top_k));
  ANVIL_RETURN_IF_ERROR(GetInt32(j, "repeat_last_n", 0, kIntMax, &p.repeat_last_n));
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> seed,
                         GetInt(j, "seed", std::numeric_limits<int64_t>::min(),
                                std::numeric_limits<int64_t>::max()));
  if (seed.has_value()) p.seed = static_cast<uint64_t>(*seed);
  ANVIL_RETURN_IF_ERROR(GetBool(j, "ignore_eos", &p.ignore_eos));
  std::optional<int32_t> n;
  ANVIL_RETURN_IF_ERROR(GetInt32(j, "n", 1, limits.max_n, &n));
  r.n = n.value_or(1);
  ANVIL_RETURN_IF_ERROR(GetBool(j, "stream", &r.stream));
  if (const Json* so = Field(j, "stream_options"); so != nullptr) {
    if (!so->is_object()) return InvalidParam("stream_options", "must be an object");
    if (!r.stream) return InvalidParam("stream_options", "is only allowed with stream: true");
    ANVIL_RETURN_IF_ERROR(GetBool(*so, "include_usage", &r.include_usage));
  }
  if (chat) {
    ANVIL_RETURN_IF_ERROR(GetBool(j, "logprobs", &r.logprobs));
    std::optional<int32_t> top;
    ANVIL_RETURN_IF_ERROR(GetInt32(j, "top_logprobs", 0, limits.max_top_logprobs, &top));
    if (top.has_value() && !r.logprobs) {
      return InvalidParam("top_logprobs", "requires logprobs: true");
    }
    if (r.logprobs) p.top_logprobs = top.value_or(0);
  } else {
    std::optional<int32_t> k;
    ANVIL_RETURN_IF_ERROR(GetInt32(j, "logprobs", 0, limits.max_top_logprobs, &k));
    r.logprobs = k.has_value();
    if (r.logprobs) p.top_logprobs = *k;
  }
  if (const Json* rf = Field(j, "response_format"); rf != nullptr) {
    const Json* type = rf->is_object() ? Field(*rf, "type") : nullptr;
    if (type == nullptr || !type->is_string()) {
      return InvalidParam("response_format", "must be an object with a string \"type\"");
    }
    const std::string t = type->get<std::string>();
    if (t == "json_object") {
      p.json_object = true;
    } else if (t != "text") {
      return InvalidParam("response_format",
                          absl::StrCat("type '", t, "' is not supported (text, json_object)"));
    }
  }
  return r;
}

absl::StatusOr<EmbeddingRequest> ParseEmbeddingRequest(std::string_view body, int32_t max_inputs) {
  ANVIL_ASSIGN_OR_RETURN(Json j, ParseObject(body));
  EmbeddingRequest r;
  ANVIL_RETURN_IF_ERROR(GetString(j, "model", &r.model));
  std::string format = "float";
  ANVIL_RETURN_IF_ERROR(GetString(j, "encoding_format", &format));
  if (format != "float" && format != "base64") {
    return InvalidParam("encoding_format", absl::StrCat("must be float or base64, got ", format));
  }
  r.base64 = format == "base64";
  if (Field(j, "dimensions") != nullptr) return InvalidParam("dimensions", "is not supported");
  const Json* in = Field(j, "input");
  if (in == nullptr) return InvalidParam("input", "is required");
  auto add_text = [&](const Json& s) -> absl::Status {
    if (s.get<std::string>().empty()) return InvalidParam("input", "an input is empty");
    r.texts.push_back(s.get<std::string>());
    return absl::OkStatus();
  };
  if (in->is_string()) {
    ANVIL_RETURN_IF_ERROR(add_text(*in));
  } else if (in->is_array() && !in->empty()) {
    if ((*in)[0].is_number_integer()) {
      ANVIL_ASSIGN_OR_RETURN(std::vector<int32_t> t, TokenArray(*in, "input"));
      r.token_inputs.push_back(std::move(t));
    } else {
      for (const Json& x : *in) {
        if (x.is_string()) {
          ANVIL_RETURN_IF_ERROR(add_text(x));
        } else if (x.is_array() && !x.empty()) {
          ANVIL_ASSIGN_OR_RETURN(std::vector<int32_t> t, TokenArray(x, "input"));
          r.token_inputs.push_back(std::move(t));
        } else {
          return InvalidParam("input", "must hold strings or non-empty arrays of token ids");
        }
      }
    }
  } else {
    return InvalidParam("input", "must be a string or a non-empty array");
  }
  if (!r.texts.empty() && !r.token_inputs.empty()) {
    return InvalidParam("input", "mixes strings and token arrays");
  }
  const size_t count = r.texts.size() + r.token_inputs.size();
  if (count > static_cast<size_t>(max_inputs)) {
    return InvalidParam("input", absl::StrCat(count, " inputs exceed this server's limit of ",
                                              max_inputs));
  }
  return r;
}

absl::Status ValidateAdapterName(const std::string& name) {
  if (name.empty() || name.size() > 128) return InvalidParam("name", "must have 1 to 128 characters");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) return InvalidParam("name", absl::StrCat("'", name, "' may use only [A-Za-z0-9_.-]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<AdapterRequest> ParseAdapterRequest(std::string_view body) {
  ANVIL_ASSIGN_OR_RETURN(Json j, ParseObject(body));
  AdapterRequest r;
  ANVIL_RETURN_IF_ERROR(GetString(j, "name", &r.name));
  ANVIL_RETURN_IF_ERROR(GetString(j, "path", &r.path));
  ANVIL_RETURN_IF_ERROR(ValidateAdapterName(r.name));
  if (r.path.empty()) return InvalidParam("path", "is required");
  return r;
}

}  // namespace anvil::server
