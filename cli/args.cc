// Flag parsing for anvil subcommands.
#include "cli/args.h"

#include <cerrno>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace anvil::cli {

absl::StatusOr<Args> Args::Parse(const CommandSpec& spec, const std::vector<std::string>& argv) {
  Args a;
  for (const FlagSpec& f : spec.flags) a.values_[f.name] = f.default_value;
  for (const std::string& s : argv) {
    if (s == "--help" || s == "-h") {
      a.help_ = true;
      return a;
    }
  }
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& s = argv[i];
    if (s.size() > 2 && s.compare(0, 2, "--") == 0) {
      std::string name = s.substr(2), value;
      bool has_value = false;
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name = name.substr(0, eq);
        has_value = true;
      }
      const FlagSpec* spec_flag = nullptr;
      for (const FlagSpec& f : spec.flags) {
        if (f.name == name) spec_flag = &f;
      }
      if (spec_flag == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag --", name, " for '", spec.name, "' (see --help)"));
      }
      if (spec_flag->value_name.empty()) {
        if (has_value && value != "true" && value != "false") {
          return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
        }
        a.values_[name] = has_value ? value : "true";
      } else {
        if (!has_value) {
          if (i + 1 >= argv.size()) {
            return absl::InvalidArgumentError(
                absl::StrCat("--", name, " needs a value (", spec_flag->value_name, ")"));
          }
          value = argv[++i];
        }
        a.values_[name] = value;
      }
      a.set_[name] = true;
    } else {
      a.positional_.push_back(s);
    }
  }
  // A last positional named "NAME..." takes one or more arguments.
  const bool variadic = !spec.positional.empty() && spec.positional.back().size() > 3 &&
                        spec.positional.back().compare(spec.positional.back().size() - 3, 3,
                                                       "...") == 0;
  if (variadic ? a.positional_.size() < spec.positional.size()
               : a.positional_.size() != spec.positional.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", spec.name, "' takes ", variadic ? "at least " : "", spec.positional.size(),
        " argument(s) (",
        absl::StrJoin(spec.positional, " "), "), got ", a.positional_.size(), " (see --help)"));
  }
  return a;
}

std::string Args::Get(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::string() : it->second;
}

absl::StatusOr<int64_t> Args::GetInt(const std::string& name) const {
  int64_t v;
  if (!absl::SimpleAtoi(Get(name), &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be an integer, got '", Get(name), "'"));
  }
  return v;
}

absl::StatusOr<double> Args::GetDouble(const std::string& name) const {
  double v;
  if (!absl::SimpleAtod(Get(name), &v)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be a number, got '", Get(name), "'"));
  }
  return v;
}

bool Args::GetBool(const std::string& name) const { return Get(name) == "true"; }

std::string HelpText(const CommandSpec& spec) {
  std::string out = absl::StrCat("usage: anvil ", spec.name);
  for (const std::string& p : spec.positional) absl::StrAppend(&out, " ", p);
  if (!spec.flags.empty()) absl::StrAppend(&out, " [flags]");
  absl::StrAppend(&out, "\n\n", spec.summary, "\n");
  if (!spec.flags.empty()) absl::StrAppend(&out, "\nflags:\n");
  for (const FlagSpec& f : spec.flags) {
    std::string left = absl::StrCat("  --", f.name);
    if (!f.value_name.empty()) absl::StrAppend(&left, " ", f.value_name);
    if (left.size() < 26) left.resize(26, ' ');
    else left += "  ";
    absl::StrAppend(&out, left, f.help);
    if (!f.default_value.empty() && !f.value_name.empty()) {
      absl::StrAppend(&out, " (default ", f.default_value, ")");
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

}  // namespace anvil::cli
