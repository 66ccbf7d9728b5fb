// Strict readers for YAML files (recipes, eval tasks): yaml-cpp builds the node tree, Section
// walks one mapping (types, ranges, unknown and duplicate keys) and Errors collects every problem
// with file:line:column and the field path. What the fields mean is the caller's business.
#ifndef ANVIL_TRAIN_YAML_FIELDS_H_
#define ANVIL_TRAIN_YAML_FIELDS_H_

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace anvil::train {

// Optimal-string-alignment distance (a transposition costs 1), for "did you mean".
inline size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1,
                          d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

inline std::string Suggest(const std::string& got, const std::vector<std::string>& known) {
  std::string best;
  size_t best_d = 3;  // suggest only close matches
  for (const std::string& k : known) {
    const size_t d = EditDistance(got, k);
    if (d < best_d && d < k.size()) {
      best_d = d;
      best = k;
    }
  }
  return best.empty() ? "" : absl::StrCat(" (did you mean \"", best, "\"?)");
}

inline std::string Describe(const YAML::Node& n) {
  if (n.IsNull()) return "null";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  std::string s = n.Scalar();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return absl::StrCat("\"", s, "\"");
}

// Problems with their place in the file; sorted by position when reported.
class Errors {
 public:
  explicit Errors(std::string name) : name_(std::move(name)) {}
  void Add(const YAML::Node* at, const std::string& path, const std::string& msg) {
    int line = -1, col = -1;
    if (at != nullptr && at->IsDefined()) {
      line = at->Mark().line;
      col = at->Mark().column;
    }
    items_.push_back({line < 0 ? INT32_MAX : line, col,
                      absl::StrCat(name_, line >= 0 ? absl::StrCat(":", line + 1, ":", col + 1) : "",
                                   ": ", path, path.empty() ? "" : ": ", msg)});
  }
  bool empty() const { return items_.empty(); }
  absl::Status ToStatus() {
    if (items_.empty()) return absl::OkStatus();
    std::stable_sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) {
      return std::pair(a.line, a.col) < std::pair(b.line, b.col);
    });
    std::vector<std::string> lines;
    for (const Item& i : items_) lines.push_back(i.text);
    return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
  }

 private:
  struct Item {
    int line, col;
    std::string text;
  };
  std::string name_;
  std::vector<Item> items_;
};

struct Range {  // for numbers; an open end excludes its bound
  double lo = -HUGE_VAL, hi = HUGE_VAL;
  bool lo_open = false, hi_open = false;
  std::string Text() const {
    if (hi == HUGE_VAL) return absl::StrCat(lo_open ? "> " : ">= ", lo);
    return absl::StrCat("in ", lo_open ? "(" : "[", lo, ", ", hi, hi_open ? ")" : "]");
  }
  bool Contains(double v) const {
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
};
inline constexpr Range kPositive{0, HUGE_VAL, true, false};
inline constexpr Range kNonNegative{0, HUGE_VAL, false, false};
inline constexpr Range kUnitOpen{0, 1, false, true};  // [0, 1)

// One mapping of the recipe. Getters leave `out` alone when the key is absent and report
// problems; Finish() reports the keys nobody asked for.
class Section {
 public:
  Section(const YAML::Node& node, std::string path, Errors* errors)
      : path_(std::move(path)), errors_(errors) {
    if (!node.IsDefined()) return;
    if (!node.IsMap()) {
      errors_->Add(&node, path_, absl::StrCat("expected a mapping, got ", Describe(node)));
      return;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      if (!key.IsScalar()) {
        errors_->Add(&key, path_, "keys must be plain names");
        continue;
      }
      auto [pos, fresh] = fields_.emplace(key.Scalar(), std::pair(key, it->second));
      if (!fresh) {
        errors_->Add(&key, Path(key.Scalar()),
                     absl::StrCat("given twice (first on line ", pos->second.first.Mark().line + 1,
                                  ")"));
      }
    }
  }

  bool Has(const std::string& key) const { return fields_.count(key) > 0; }
  const YAML::Node* KeyNode(const std::string& key) const {
    auto it = fields_.find(key);
    return it == fields_.end() ? nullptr : &it->second.first;
  }
  std::string Path(const std::string& key) const {
    return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
  }

  Section Child(const std::string& key) { return Section(Get(key), Path(key), errors_); }
  // The raw node of `key` (Undefined when absent), for shapes the typed getters do not cover.
  YAML::Node Raw(const std::string& key) { return Get(key); }

  void Int(const std::string& key, int64_t* out, int64_t lo, int64_t hi = INT64_MAX) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    int64_t v = 0;
    if (!IsPlain(n) || !absl::SimpleAtoi(n.Scalar(), &v)) return Bad(n, key, "integer");
    if (v < lo || v > hi) {
      return Fail(n, key, absl::StrCat("must be ", hi == INT64_MAX ? ">= " : "in [", lo,
                                       hi == INT64_MAX ? "" : absl::StrCat(", ", hi, "]"),
                                       ", got ", v));
    }
    *out = v;
  }
  void Seed(const std::string& key, uint64_t* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    uint64_t v = 0;
    if (!IsPlain(n) || n.Scalar().find('-') != std::string::npos ||
        !absl::SimpleAtoi(n.Scalar(), &v)) {
      return Bad(n, key, "non-negative integer");
    }
    *out = v;
  }
  void Number(const std::string& key, double* out, const Range& range) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    double v = 0;
    if (!IsPlain(n) || !absl::SimpleAtod(n.Scalar(), &v) || !std::isfinite(v)) {
      return Bad(n, key, "number");
    }
    if (!range.Contains(v)) return Fail(n, key, absl::StrCat("must be ", range.Text(), ", got ", v));
    *out = v;
  }
  void Number(const std::string& key, float* out, const Range& range) {
    double v = *out;
    Number(key, &v, range);
    *out = static_cast<float>(v);
  }
  void Bool(const std::string& key, bool* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    const std::string s = IsPlain(n) ? n.Scalar() : "";
    if (s == "true" || s == "True" || s == "TRUE") {
      *out = true;
    } else if (s == "false" || s == "False" || s == "FALSE") {
      *out = false;
    } else {
      Bad(n, key, "true or false");
    }
  }
  void String(const std::string& key, std::string* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    if (!n.IsScalar() || n.IsNull()) return Bad(n, key, "string");
    if (n.Scalar().empty()) return Fail(n, key, "must not be empty");
    *out = n.Scalar();
  }
  template <typename E>
  void Enum(const std::string& key, const std::vector<std::pair<std::string, E>>& choices, E* out) {
    const YAML::Node n = Get(key);
    if (n.IsDefined()) ParseEnum(n, Path(key), choices, out);
  }
  template <typename E>
  void EnumList(const std::string& key, const std::vector<std::pair<std::string, E>>& choices,
                std::vector<E>* out) {
    const YAML::Node n = Get(key);
    if (!n.IsDefined()) return;
    if (!n.IsSequence()) return Bad(n, key, "a list");
    std::vector<E> values;
    for (size_t i = 0; i < n.size(); ++i) {
      E v{};
      const std::string path = absl::StrCat(Path(key), "[", i, "]");
      const YAML::Node item = n[i];
      if (!ParseEnum(item, path, choices, &v)) return;
      if (std::find(values.begin(), values.end(), v) != values.end()) {
        return errors_->Add(&item, path, absl::StrCat("\"", item.Scalar(), "\" listed twice"));
      }
      values.push_back(v);
    }
    *out = std::move(values);
  }

  void Finish() const {
    for (const auto& [key, kv] : fields_) {
      if (std::find(asked_.begin(), asked_.end(), key) == asked_.end()) {
        errors_->Add(&kv.first, Path(key), absl::StrCat("unknown field", Suggest(key, asked_)));
      }
    }
  }

 private:
  static bool IsPlain(const YAML::Node& n) { return n.IsScalar() && n.Tag() == "?"; }

  YAML::Node Get(const std::string& key) {
    asked_.push_back(key);
    auto it = fields_.find(key);
    return it == fields_.end() ? YAML::Node(YAML::NodeType::Undefined) : it->second.second;
  }
  void Bad(const YAML::Node& n, const std::string& key, const std::string& expected) {
    Fail(n, key, absl::StrCat("expected ", expected, ", got ", Describe(n)));
  }
  void Fail(const YAML::Node& n, const std::string& key, const std::string& msg) {
    errors_->Add(&n, Path(key), msg);
  }
  template <typename E>
  bool ParseEnum(const YAML::Node& n, const std::string& path,
                 const std::vector<std::pair<std::string, E>>& choices, E* out) {
    std::vector<std::string> names;
    for (const auto& [name, value] : choices) {
      names.push_back(name);
      if (n.IsScalar() && !n.IsNull() && n.Scalar() == name) {
        *out = value;
        return true;
      }
    }
    errors_->Add(&n, path, absl::StrCat("expected one of ", absl::StrJoin(names, ", "), "; got ",
                                        Describe(n), n.IsScalar() ? Suggest(n.Scalar(), names) : ""));
    return false;
  }

  std::string path_;
  Errors* errors_;
  std::map<std::string, std::pair<YAML::Node, YAML::Node>> fields_;
  std::vector<std::string> asked_;
};

// {name, value} for the first `n` values of a dense enum, named by `name`.
template <typename E>
std::vector<std::pair<std::string, E>> Choices(int n, const char* (*name)(E)) {
  std::vector<std::pair<std::string, E>> out;
  for (int i = 0; i < n; ++i) out.emplace_back(name(static_cast<E>(i)), static_cast<E>(i));
  return out;
}

inline std::string ResolvePath(const std::string& p, const std::string& base_dir) {
  if (p.empty()) return p;
  if (p == "~" || p.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    return absl::StrCat(home != nullptr ? home : "", p.substr(1));
  }
  const std::filesystem::path path(p);
  if (path.is_absolute() || base_dir.empty()) return p;
  return (std::filesystem::path(base_dir) / path).lexically_normal().string();
}

// Parses `yaml` (one document, at most max_bytes) and hands its top-level mapping to
// `read(node, errors)`; a YAML syntax error, an empty text, several documents or a top level
// that is not a mapping is an InvalidArgument naming `name` (and the line and column where
// known), and so is every problem `read` records. `what` names the kind of file in messages
// ("recipe", "task file").
template <typename Read>
absl::Status ParseStrictYaml(std::string_view yaml, const std::string& name, const char* what,
                             size_t max_bytes, Read&& read) {
  if (yaml.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": ", yaml.size(), " bytes; a ", what, " is at most ", max_bytes));
  }
  Errors errors{name};
  try {
    const std::vector<YAML::Node> docs = YAML::LoadAll(std::string(yaml));
    if (docs.empty() || docs[0].IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": the ", what, " is empty"));
    }
    if (docs.size() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": ", docs.size(), " YAML documents; a ", what, " is one"));
    }
    if (!docs[0].IsMap()) {
      errors.Add(&docs[0], "", absl::StrCat("expected a mapping of fields, got ", Describe(docs[0])));
    } else {
      read(docs[0], &errors);
    }
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.msg));
    return absl::InvalidArgumentError(absl::StrCat(name, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": YAML error: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.what()));
  }
  return errors.ToStatus();
}

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_YAML_FIELDS_H_
