// Prompt strategies and their versioning hash. Message order: system, few-shot turns, the
// record's earlier turns (chat data), the record's user turn.
#include "eval/prompt.h"

#include <algorithm>
#include <random>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/status_macros.h"
#include "model/sha256.h"

namespace anvil::eval {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [0, n) without std::uniform_int_distribution (whose algorithm is not standardized).
uint64_t Below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x = rng();
  while (x >= limit) x = rng();
  return x % n;
}

// Length-prefixed, so no two different specs hash the same text.
void Put(std::string* out, std::string_view key, std::string_view value) {
  absl::StrAppend(out, absl::string_view(key.data(), key.size()), "=", value.size(), ":",
                  absl::string_view(value.data(), value.size()), "\n");
}

}  // namespace

absl::StatusOr<std::string> FillTemplate(std::string_view tmpl,
                                         const std::map<std::string, std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if ((c == '{' || c == '}') && i + 1 < tmpl.size() && tmpl[i + 1] == c) {
      out.push_back(c);
      ++i;
    } else if (c == '{') {
      const size_t end = tmpl.find('}', i);
      if (end == std::string_view::npos) {
        return absl::InvalidArgumentError(absl::StrCat("unclosed '{' at offset ", i));
      }
      const std::string name(tmpl.substr(i + 1, end - i - 1));
      auto it = fields.find(name);
      if (it == fields.end()) {
        return absl::InvalidArgumentError(absl::StrCat("no field \"", name, "\" in the record"));
      }
      out += it->second;
      i = end;
    } else if (c == '}') {
      return absl::InvalidArgumentError(absl::StrCat("unmatched '}' at offset ", i));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<size_t> SelectFewShot(size_t pool_size, int64_t k, uint64_t seed,
                                  uint64_t record_index, const std::vector<size_t>& exclude) {
  std::vector<size_t> candidates;
  candidates.reserve(pool_size);
  for (size_t i = 0; i < pool_size; ++i) {
    if (std::find(exclude.begin(), exclude.end(), i) == exclude.end()) candidates.push_back(i);
  }
  std::mt19937_64 rng(SplitMix64(seed) ^ SplitMix64(record_index + 1));
  const size_t n = std::min(candidates.size(), static_cast<size_t>(std::max<int64_t>(k, 0)));
  for (size_t i = 0; i < n; ++i) {
    const size_t j = i + Below(rng, candidates.size() - i);
    std::swap(candidates[i], candidates[j]);
  }
  candidates.resize(n);
  return candidates;
}

std::optional<std::string> ExtractAnswer(std::string_view output,
                                         const ChainOfThoughtSpec& spec) {
  if (!spec.regex.empty()) {
    const std::regex re(spec.regex, std::regex::ECMAScript);
    const std::string text(output);
    std::optional<std::string> last;
    for (auto it = std::sregex_iterator(text.begin(), text.end(), re);
         it != std::sregex_iterator(); ++it) {
      const std::smatch& m = *it;
      last = m.size() > 1 && m[1].matched ? m[1].str() : m[0].str();
    }
    if (!last) return std::nullopt;
    return std::string(absl::StripAsciiWhitespace(*last));
  }
  const size_t at = output.rfind(spec.marker);
  if (at == std::string_view::npos) return std::nullopt;
  absl::string_view rest(output.data() + at + spec.marker.size(),
                         output.size() - at - spec.marker.size());
  rest = absl::StripLeadingAsciiWhitespace(rest);
  rest = rest.substr(0, rest.find('\n'));  // the answer is the rest of the marker's line
  return std::string(absl::StripAsciiWhitespace(rest));
}

PromptBuilder::PromptBuilder(const PromptSpec& spec, PromptStrategy strategy,
                             const std::vector<Example>* pool)
    : spec_(spec), strategy_(strategy), pool_(pool) {
  std::string canon;
  Put(&canon, "version", "1");
  Put(&canon, "strategy", PromptStrategyName(strategy_));
  Put(&canon, "system", spec_.system);
  Put(&canon, "user", spec_.user);
  if (strategy_ == PromptStrategy::kFewShot) {
    const FewShotSpec& f = spec_.few_shot;
    Put(&canon, "k", absl::StrCat(f.k));
    Put(&canon, "seed", absl::StrCat(f.seed));
    Put(&canon, "multi_turn", f.multi_turn ? "true" : "false");
    Put(&canon, "separator", f.separator);
    if (pool_ != nullptr) {
      for (const Example& ex : *pool_) {
        for (const auto& [key, value] : ex.fields) Put(&canon, key, value);
        Put(&canon, "reference", ex.reference);
      }
    }
  } else if (strategy_ == PromptStrategy::kChainOfThought) {
    Put(&canon, "instruction", spec_.chain_of_thought.instruction);
    Put(&canon, "marker", spec_.chain_of_thought.regex.empty() ? spec_.chain_of_thought.marker
                                                               : "");
    Put(&canon, "regex", spec_.chain_of_thought.regex);
  }
  hash_ = Sha256Hex(canon);
}

absl::StatusOr<std::vector<ChatMessage>> PromptBuilder::Messages(const Example& ex,
                                                                 uint64_t index) const {
  std::vector<ChatMessage> out;
  // The record's own turns (chat data): leading system messages, then history, then its user
  // turn, which the user template replaces.
  size_t first = 0;
  while (first < ex.chat.size() && ex.chat[first].role == "system") ++first;
  if (!spec_.system.empty()) {
    out.push_back({"system", spec_.system});
  } else {
    out.insert(out.end(), ex.chat.begin(), ex.chat.begin() + first);
  }
  ANVIL_ASSIGN_OR_RETURN(std::string user, FillTemplate(spec_.user, ex.fields));
  if (strategy_ == PromptStrategy::kChainOfThought) {
    absl::StrAppend(&user, "\n\n", spec_.chain_of_thought.instruction);
  }
  if (strategy_ == PromptStrategy::kFewShot) {
    if (pool_ == nullptr) return absl::FailedPreconditionError("few_shot without a pool");
    std::vector<size_t> same;  // the record itself, when the pool is the data
    for (size_t i = 0; i < pool_->size(); ++i) {
      if ((*pool_)[i].fields == ex.fields && (*pool_)[i].reference == ex.reference) {
        same.push_back(i);
      }
    }
    const FewShotSpec& f = spec_.few_shot;
    std::vector<std::string> inlined;
    for (size_t i : SelectFewShot(pool_->size(), f.k, f.seed, index, same)) {
      const Example& shot = (*pool_)[i];
      ANVIL_ASSIGN_OR_RETURN(std::string q, FillTemplate(spec_.user, shot.fields));
      if (f.multi_turn) {
        out.push_back({"user", q});
        out.push_back({"assistant", shot.reference});
      } else {
        inlined.push_back(absl::StrCat(q, "\n", shot.reference));
      }
    }
    if (!inlined.empty()) {
      user = absl::StrCat(absl::StrJoin(inlined, f.separator), f.separator, user);
    }
  }
  if (ex.chat.size() > first + 1) {
    out.insert(out.end(), ex.chat.begin() + first, ex.chat.end() - 1);
  }
  out.push_back({"user", user});
  return out;
}

absl::StatusOr<std::string> PromptBuilder::Render(const ChatTemplate& tmpl, const Example& ex,
                                                  uint64_t index) const {
  ANVIL_ASSIGN_OR_RETURN(std::vector<ChatMessage> messages, Messages(ex, index));
  return tmpl.Render(messages, /*add_generation_prompt=*/true);
}

}  // namespace anvil::eval
