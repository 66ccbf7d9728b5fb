// Task records: JSONL in the fields or chat format, checked line by line (every bad line is
// reported with file:line and what is wrong), and the {variable} syntax of prompt templates.
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "eval/task.h"
#include "kernels/core/status_macros.h"
#include "nlohmann/json.hpp"
#include "train/dataset.h"

namespace anvil::eval {
namespace {

using nlohmann::json;

constexpr int kMaxListedErrors = 20;

// A JSON scalar as template text: strings as they are, numbers and booleans as JSON writes them.
bool ScalarText(const json& v, std::string* out) {
  if (v.is_string()) {
    *out = v.get<std::string>();
    return true;
  }
  if (v.is_number() || v.is_boolean()) {
    *out = v.dump();
    return true;
  }
  return false;
}

// The chat form: {"messages": [..., {"role": "user", ...}, {"role": "assistant", ...}]}.
std::string ReadChat(const json& rec, Example* ex) {
  if (!rec.contains("messages") || !rec["messages"].is_array()) {
    return "expected \"messages\": a list of {role, content}";
  }
  const json& msgs = rec["messages"];
  for (size_t i = 0; i < msgs.size(); ++i) {
    const json& m = msgs[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
        !m.contains("content") || !m["content"].is_string()) {
      return absl::StrCat("messages[", i, "]: expected {\"role\": string, \"content\": string}");
    }
    ex->chat.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  if (ex->chat.size() < 2 || ex->chat.back().role != "assistant" ||
      ex->chat[ex->chat.size() - 2].role != "user") {
    return "messages: must end with a user turn and the assistant's answer (the reference)";
  }
  ex->reference = ex->chat.back().content;
  ex->chat.pop_back();
  ex->fields["input"] = ex->chat.back().content;
  ex->fields["reference"] = ex->reference;
  return "";
}

std::string ReadFields(const json& rec, const DataSpec& spec, TaskKind kind, Example* ex) {
  for (const auto& [key, value] : rec.items()) {
    std::string text;
    if (ScalarText(value, &text)) ex->fields[key] = text;
  }
  if (!rec.contains(spec.reference)) return absl::StrCat(spec.reference, ": missing");
  const json& ref = rec[spec.reference];
  if (kind != TaskKind::kMultipleChoice) {
    if (!ScalarText(ref, &ex->reference)) {
      return absl::StrCat(spec.reference, ": expected a string, got ", ref.type_name());
    }
    return "";
  }
  if (!rec.contains(spec.choices) || !rec[spec.choices].is_array() ||
      rec[spec.choices].size() < 2) {
    return absl::StrCat(spec.choices, ": expected a list of at least 2 strings");
  }
  for (const json& c : rec[spec.choices]) {
    if (!c.is_string()) return absl::StrCat(spec.choices, ": every choice must be a string");
    ex->choices.push_back(c.get<std::string>());
  }
  const int64_t n = static_cast<int64_t>(ex->choices.size());
  if (ref.is_number_integer()) {
    ex->answer = ref.get<int64_t>();
    if (ex->answer < 0 || ex->answer >= n) {
      return absl::StrCat(spec.reference, ": ", ex->answer, " is out of range for ", n,
                          " choices");
    }
  } else if (ref.is_string()) {
    for (int64_t i = 0; i < n; ++i) {
      if (ex->choices[i] == ref.get<std::string>()) ex->answer = i;
    }
    if (ex->answer < 0) return absl::StrCat(spec.reference, ": \"", ref.get<std::string>(),
                                            "\" is none of the choices");
  } else {
    return absl::StrCat(spec.reference, ": expected a choice index or a choice's text");
  }
  ex->reference = ex->choices[ex->answer];
  ex->fields[spec.reference] = ex->reference;
  return "";
}

}  // namespace

absl::StatusOr<std::vector<std::string>> TemplateVariables(std::string_view tmpl) {
  std::vector<std::string> vars;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if ((c == '{' || c == '}') && i + 1 < tmpl.size() && tmpl[i + 1] == c) {
      ++i;  // {{ or }}: a literal brace
    } else if (c == '}') {
      return absl::InvalidArgumentError(absl::StrCat("unmatched '}' at offset ", i,
                                                     " (write }} for a literal brace)"));
    } else if (c == '{') {
      const size_t end = tmpl.find('}', i);
      const std::string name(tmpl.substr(i + 1, end == std::string_view::npos ? 0 : end - i - 1));
      if (end == std::string_view::npos || name.empty() ||
          name.find_first_of("{ \n") != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "'{' at offset ", i, " does not open a {field} (write {{ for a literal brace)"));
      }
      vars.push_back(name);
      i = end;
    }
  }
  return vars;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be opened"));
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat(path, ": read error"));
  return ss.str();
}

absl::StatusOr<std::vector<Example>> ParseExamples(std::string_view text, std::string_view name,
                                                   const DataSpec& spec, TaskKind kind,
                                                   std::string_view user_template) {
  if (spec.format == DataFormat::kText) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": text data has no records"));
  }
  ANVIL_ASSIGN_OR_RETURN(std::vector<std::string> vars, TemplateVariables(user_template));
  train::LineErrors errors(std::string(name), kMaxListedErrors);
  std::vector<Example> out;
  std::set<std::string> ids;
  int64_t line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (raw.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const json rec = json::parse(raw, nullptr, /*allow_exceptions=*/false);
    if (rec.is_discarded() || !rec.is_object()) {
      errors.Add(line, "not a JSON object");
      continue;
    }
    Example ex;
    ex.line = line;
    std::string problem = spec.format == DataFormat::kChat ? ReadChat(rec, &ex)
                                                           : ReadFields(rec, spec, kind, &ex);
    if (problem.empty() && !spec.id.empty()) {
      if (!rec.contains(spec.id) || !ScalarText(rec[spec.id], &ex.id)) {
        problem = absl::StrCat(spec.id, ": missing (data.id names it)");
      } else if (!ids.insert(ex.id).second) {
        problem = absl::StrCat(spec.id, ": \"", ex.id, "\" used twice");
      }
    }
    for (const std::string& v : vars) {
      if (problem.empty() && ex.fields.count(v) == 0) {
        problem = absl::StrCat(v, ": missing (prompt.user uses {", v, "})");
      }
    }
    if (!problem.empty()) {
      errors.Add(line, problem);
      continue;
    }
    if (ex.id.empty()) ex.id = absl::StrCat(line);
    out.push_back(std::move(ex));
  }
  ANVIL_RETURN_IF_ERROR(errors.ToStatus("malformed records"));
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(std::string(name), ": no records"));
  return out;
}

absl::StatusOr<std::vector<Example>> LoadExamples(const std::string& path, const DataSpec& spec,
                                                  TaskKind kind, std::string_view user_template) {
  ANVIL_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  return ParseExamples(text, path, spec, kind, user_template);
}

}  // namespace anvil::eval
