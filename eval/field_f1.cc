// Field-level F1 over JSON objects (see field_f1.h).
#include "eval/field_f1.h"

#include <map>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace anvil::eval {
namespace {

using nlohmann::json;
using FieldSets = std::map<std::string, std::set<std::string>>;

// key -> set of canonical JSON texts of its values (nlohmann's default map sorts object keys, so
// dump() is canonical).
bool ToSets(absl::string_view text, FieldSets* out) {
  const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return false;
  for (const auto& [key, value] : j.items()) {
    std::set<std::string>& s = (*out)[key];
    if (value.is_array()) {
      for (const json& v : value) s.insert(v.dump(-1, ' ', false, json::error_handler_t::replace));
    } else {
      s.insert(value.dump(-1, ' ', false, json::error_handler_t::replace));
    }
  }
  return true;
}

double Ratio(int64_t num, int64_t den, int64_t other) {
  if (den == 0) return other == 0 ? 1.0 : 0.0;
  return static_cast<double>(num) / static_cast<double>(den);
}

}  // namespace

absl::StatusOr<FieldF1Result> FieldF1(absl::string_view prediction, absl::string_view reference) {
  FieldSets ref, pred;
  if (!ToSets(reference, &ref)) {
    return absl::InvalidArgumentError(
        absl::StrCat("field_f1: the reference is not a JSON object: ", reference.substr(0, 80)));
  }
  FieldF1Result r;
  for (const auto& [key, values] : ref) r.expected += static_cast<int64_t>(values.size());
  if (!ToSets(prediction, &pred)) return r;  // not JSON: nothing predicted, nothing right
  for (const auto& [key, values] : pred) {
    r.predicted += static_cast<int64_t>(values.size());
    auto it = ref.find(key);
    if (it == ref.end()) continue;
    for (const std::string& v : values) r.matched += static_cast<int64_t>(it->second.count(v));
  }
  r.precision = Ratio(r.matched, r.predicted, r.expected);
  r.recall = Ratio(r.matched, r.expected, r.predicted);
  r.f1 = r.precision + r.recall > 0 ? 2 * r.precision * r.recall / (r.precision + r.recall) : 0.0;
  return r;
}

}  // namespace anvil::eval
