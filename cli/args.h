// A small command-line parser for the anvil subcommands: declared flags (`--name value`,
// `--name=value`, boolean `--name`), positional arguments, generated --help text.
#ifndef ANVIL_CLI_ARGS_H_
#define ANVIL_CLI_ARGS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace anvil::cli {

struct FlagSpec {
  std::string name;           // without dashes
  std::string value_name;     // "" for a boolean flag
  std::string default_value;
  std::string help;
};

struct CommandSpec {
  std::string name;
  std::string summary;
  std::vector<std::string> positional;  // names, all required; a last "NAME..." takes 1 or more
  std::vector<FlagSpec> flags;
};

class Args {
 public:
  // InvalidArgument for an unknown flag, a missing value or a wrong positional count.
  // A --help anywhere sets help() and skips the other checks.
  static absl::StatusOr<Args> Parse(const CommandSpec& spec, const std::vector<std::string>& argv);

  bool help() const { return help_; }
  const std::string& positional(size_t i) const { return positional_[i]; }
  const std::vector<std::string>& positionals() const { return positional_; }
  std::string Get(const std::string& name) const;
  bool Has(const std::string& name) const { return set_.count(name) > 0; }  // given explicitly
  absl::StatusOr<int64_t> GetInt(const std::string& name) const;
  absl::StatusOr<double> GetDouble(const std::string& name) const;
  bool GetBool(const std::string& name) const;

 private:
  bool help_ = false;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> set_;
};

std::string HelpText(const CommandSpec& spec);

}  // namespace anvil::cli

#endif  // ANVIL_CLI_ARGS_H_
