// The anvil command: dispatches to a subcommand; an error is one line on stderr and exit 1
// (2 for a usage error).
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.h"

int main(int argc, char** argv) {
  const std::vector<anvil::cli::Command> commands = anvil::cli::AllCommands();
  const std::string name = argc > 1 ? argv[1] : "--help";
  if (name == "--help" || name == "-h" || name == "help") {
    std::printf("usage: anvil COMMAND [args] (anvil COMMAND --help for details)\n\ncommands:\n");
    for (const auto& c : commands) std::printf("  %-12s %s\n", c.spec.name.c_str(), c.spec.summary.c_str());
    return argc > 1 ? 0 : 2;
  }
  for (const auto& c : commands) {
    if (c.spec.name != name) continue;
    auto args = anvil::cli::Args::Parse(c.spec, std::vector<std::string>(argv + 2, argv + argc));
    if (!args.ok()) {
      std::fprintf(stderr, "anvil %s: %s\n", name.c_str(), std::string(args.status().message()).c_str());
      return 2;
    }
    if (args->help()) {
      std::fputs(anvil::cli::HelpText(c.spec).c_str(), stdout);
      return 0;
    }
    const absl::Status s = c.run(*args);
    if (!s.ok()) {
      std::fprintf(stderr, "anvil %s: %s: %s\n", name.c_str(),
                   absl::StatusCodeToString(s.code()).c_str(), std::string(s.message()).c_str());
      return 1;
    }
    return 0;
  }
  std::fprintf(stderr, "anvil: unknown command '%s' (anvil --help lists them)\n", name.c_str());
  return 2;
}
