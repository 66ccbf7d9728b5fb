// JSONL records -> Dataset. Each line is parsed by nlohmann-json inside a try block after a cheap
// pre-scan (length and nesting caps), then checked field by field; problems are collected per
// line so that one run of the reader reports every bad line of a file.
#include "train/dataset.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/status_macros.h"
#include "nlohmann/json.hpp"

namespace anvil::train {
namespace {

using json = nlohmann::json;

// "got ..." text for a JSON value: strings quoted (and shortened), containers by kind.
std::string Describe(const json& j) {
  switch (j.type()) {
    case json::value_t::string: {
      std::string s = j.get<std::string>();
      if (s.size() > 40) s = s.substr(0, 37) + "...";
      return json(s).dump(-1, ' ', false, json::error_handler_t::replace);
    }
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    case json::value_t::null: return "null";
    default: return j.dump();
  }
}

std::string Quoted(const std::string& s) { return absl::StrCat("\"", s, "\""); }

// Largest nesting depth of [ and { outside strings (JSON has no other nesting).
int NestingDepth(std::string_view line) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : line) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    if (c == '[' || c == '{') max_depth = std::max(max_depth, ++depth);
    if (c == ']' || c == '}') --depth;
  }
  return max_depth;
}

bool IsBlank(std::string_view line) {
  return std::all_of(line.begin(), line.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
}

// Field checks throw nothing: each returns the first problem as a string, or nullopt.
using Problem = std::optional<std::string>;

Problem ParseMessage(const json& j, const std::string& path, ChatMessage* out) {
  if (!j.is_object()) {
    return absl::StrCat(path, ": expected an object {\"role\", \"content\"}, got ", Describe(j));
  }
  const auto role = j.find("role");
  if (role == j.end()) return absl::StrCat(path, ".role: missing");
  if (!role->is_string()) {
    return absl::StrCat(path, ".role: expected a string, got ", Describe(*role));
  }
  out->role = role->get<std::string>();
  if (out->role != "system" && out->role != "user" && out->role != "assistant") {
    return absl::StrCat(path, ".role: expected \"system\", \"user\" or \"assistant\", got ",
                        Describe(*role));
  }
  const auto content = j.find("content");
  if (content == j.end()) return absl::StrCat(path, ".content: missing");
  if (!content->is_string()) {
    return absl::StrCat(path, ".content: expected a string, got ", Describe(*content));
  }
  out->content = content->get<std::string>();
  return std::nullopt;
}

Problem ParseMessageList(const json& j, const std::string& key, std::vector<ChatMessage>* out) {
  if (!j.is_array()) {
    return absl::StrCat(key, ": expected a list of messages, got ", Describe(j));
  }
  if (j.empty()) return absl::StrCat(key, ": empty list");
  for (size_t i = 0; i < j.size(); ++i) {
    ChatMessage m;
    if (Problem p = ParseMessage(j[i], absl::StrCat(key, "[", i, "]"), &m)) return p;
    out->push_back(std::move(m));
  }
  return std::nullopt;
}

// A prompt: a string (one user turn) or a list of messages.
Problem ParsePrompt(const json& j, std::vector<ChatMessage>* out) {
  if (j.is_string()) {
    out->push_back({"user", j.get<std::string>()});
    return std::nullopt;
  }
  if (!j.is_array()) {
    return absl::StrCat("prompt: expected a string or a list of messages, got ", Describe(j));
  }
  return ParseMessageList(j, "prompt", out);
}

// An answer (completion, chosen, rejected): a string (one assistant turn) or a list of
// assistant messages.
Problem ParseAnswer(const json& j, const std::string& key, std::vector<ChatMessage>* out) {
  if (j.is_string()) {
    out->push_back({"assistant", j.get<std::string>()});
    return std::nullopt;
  }
  if (!j.is_array()) {
    return absl::StrCat(key, ": expected a string or a list of messages, got ", Describe(j));
  }
  const size_t first = out->size();
  if (Problem p = ParseMessageList(j, key, out)) return p;
  for (size_t i = first; i < out->size(); ++i) {
    if ((*out)[i].role != "assistant") {
      return absl::StrCat(key, "[", i - first, "].role: expected \"assistant\", got ",
                          Quoted((*out)[i].role));
    }
  }
  return std::nullopt;
}

class JsonlParser {
 public:
  JsonlParser(std::string_view name, const ReadOptions& options)
      : options_(options), errors_(std::string(name), options.max_listed_errors) {
    data_.name = std::string(name);
  }

  // `line` is the text without its newline; `too_long` when it was cut at max_line_bytes.
  void Line(int64_t line_no, std::string_view line, bool too_long) {
    if (too_long) {
      errors_.Add(line_no, absl::StrCat("line is longer than ", options_.max_line_bytes,
                                        " bytes; not parsed"));
      return;
    }
    if (line_no == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // BOM
    if (IsBlank(line)) return;
    if (++records_ > options_.max_records) {
      if (records_ == options_.max_records + 1) {
        errors_.Add(line_no, absl::StrCat("more than ", options_.max_records,
                                          " records; split the file"));
      }
      return;
    }
    if (NestingDepth(line) > options_.max_depth) {
      errors_.Add(line_no, absl::StrCat("JSON nested deeper than ", options_.max_depth));
      return;
    }
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      // nlohmann: "[json.exception.parse_error.101] parse error at line 1, column 7: ...".
      std::string what = e.what();
      const size_t at = what.find("column ");
      errors_.Add(line_no, absl::StrCat("invalid JSON",
                                        at == std::string::npos ? ": " + what
                                                                : " at " + what.substr(at)));
      return;
    }
    if (!j.is_object()) {
      errors_.Add(line_no, absl::StrCat("expected a JSON object, got ", Describe(j)));
      return;
    }
    if (Problem p = Record(j, line_no)) errors_.Add(line_no, *p);
  }

  absl::StatusOr<Dataset> Finish() {
    ANVIL_RETURN_IF_ERROR(errors_.ToStatus("malformed lines"));
    if (data_.size() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(data_.name, ": no records (the file is empty or blank)"));
    }
    return std::move(data_);
  }

 private:
  Problem Record(const json& j, int64_t line_no) {
    const bool has_messages = j.contains("messages");
    const bool has_pref = j.contains("chosen") || j.contains("rejected");
    const bool has_prompt = j.contains("prompt") || j.contains("completion");
    if (has_messages && (has_pref || has_prompt)) {
      return std::string(
          "both \"messages\" and \"prompt\"/\"completion\"/\"chosen\"/\"rejected\" given; "
          "a record has one form");
    }
    if (has_pref && j.contains("completion")) {
      return std::string("\"completion\" and \"chosen\"/\"rejected\" given; a record has one form");
    }
    if (!has_messages && !has_pref && !has_prompt) {
      return std::string(
          "expected \"messages\", \"prompt\" + \"completion\" or \"prompt\" + \"chosen\" + "
          "\"rejected\"");
    }
    const DatasetKind kind = has_pref ? DatasetKind::kPreference : DatasetKind::kSft;
    if (first_kind_line_ == 0) {
      first_kind_line_ = line_no;
      data_.kind = kind;
    } else if (kind != data_.kind) {
      return absl::StrCat("a ", DatasetKindName(kind), " record, but line ", first_kind_line_,
                          " is a ", DatasetKindName(data_.kind),
                          " record; a file holds one kind");
    }
    if (kind == DatasetKind::kPreference) return Preference(j, line_no);
    ChatRecord r;
    r.line = line_no;
    if (has_messages) {
      if (Problem p = ParseMessageList(j["messages"], "messages", &r.messages)) return p;
    } else {
      if (!j.contains("prompt")) return std::string("prompt: missing");
      if (!j.contains("completion")) return std::string("completion: missing");
      if (Problem p = ParsePrompt(j["prompt"], &r.messages)) return p;
      r.completion_start = r.messages.size();
      if (Problem p = ParseAnswer(j["completion"], "completion", &r.messages)) return p;
    }
    const bool any_assistant =
        std::any_of(r.messages.begin() + static_cast<ptrdiff_t>(r.completion_start),
                    r.messages.end(), [](const ChatMessage& m) { return m.role == "assistant"; });
    if (!any_assistant) return std::string("messages: no assistant message to train on");
    data_.chats.push_back(std::move(r));
    return std::nullopt;
  }

  Problem Preference(const json& j, int64_t line_no) {
    PreferenceRecord r;
    r.line = line_no;
    for (const char* key : {"prompt", "chosen", "rejected"}) {
      if (!j.contains(key)) return absl::StrCat(key, ": missing");
    }
    if (Problem p = ParsePrompt(j["prompt"], &r.prompt)) return p;
    if (Problem p = ParseAnswer(j["chosen"], "chosen", &r.chosen)) return p;
    if (Problem p = ParseAnswer(j["rejected"], "rejected", &r.rejected)) return p;
    data_.preferences.push_back(std::move(r));
    return std::nullopt;
  }

  const ReadOptions& options_;
  LineErrors errors_;
  Dataset data_;
  int64_t records_ = 0;
  int64_t first_kind_line_ = 0;
};

}  // namespace

const char* DatasetKindName(DatasetKind kind) {
  return kind == DatasetKind::kSft ? "SFT" : "preference";
}

void LineErrors::Add(int64_t line, absl::string_view message) {
  ++count_;
  if (static_cast<int64_t>(listed_.size()) < max_listed_) {
    listed_.push_back(absl::StrCat(name_, ":", line, ": ", message));
  }
}

absl::Status LineErrors::ToStatus(absl::string_view what) const {
  if (count_ == 0) return absl::OkStatus();
  if (count_ == 1) return absl::InvalidArgumentError(listed_[0]);
  std::string msg = absl::StrCat(name_, ": ", count_, " ", what, ":\n", absl::StrJoin(listed_, "\n"));
  const int64_t rest = count_ - static_cast<int64_t>(listed_.size());
  if (rest > 0) absl::StrAppend(&msg, "\n... and ", rest, " more");
  return absl::InvalidArgumentError(msg);
}

absl::StatusOr<Dataset> ParseJsonl(std::string_view text, std::string_view name,
                                   const ReadOptions& options) {
  JsonlParser parser(name, options);
  int64_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const bool too_long = line.size() > options.max_line_bytes;
    parser.Line(++line_no, too_long ? std::string_view() : line, too_long);
  }
  return parser.Finish();
}

absl::StatusOr<Dataset> ReadJsonlFile(const std::string& path, const ReadOptions& options) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a JSONL file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot be opened"));
  // Streamed in chunks so that a line is never held past max_line_bytes.
  JsonlParser parser(path, options);
  std::string line, chunk(size_t{1} << 20, '\0');
  bool too_long = false;
  int64_t line_no = 0;
  auto flush = [&]() {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    too_long = too_long || line.size() > options.max_line_bytes;
    parser.Line(++line_no, too_long ? std::string_view() : std::string_view(line), too_long);
    line.clear();
    too_long = false;
  };
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    std::string_view got(chunk.data(), static_cast<size_t>(in.gcount()));
    while (!got.empty()) {
      const size_t nl = got.find('\n');
      const std::string_view part = got.substr(0, nl);
      if (!too_long) {
        if (line.size() + part.size() > options.max_line_bytes + 1) {  // +1: a trailing \r
          too_long = true;
          line.clear();
        } else {
          line.append(part);
        }
      }
      if (nl == std::string_view::npos) break;
      got.remove_prefix(nl + 1);
      flush();
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  if (!line.empty() || too_long) flush();
  return parser.Finish();
}

}  // namespace anvil::train
