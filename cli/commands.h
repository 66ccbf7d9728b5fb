// The anvil subcommands. Each is a spec (name, summary, positional args, flags) plus a Run
// function returning a Status; main() prints a failure as one line and exits non-zero.
#ifndef ANVIL_CLI_COMMANDS_H_
#define ANVIL_CLI_COMMANDS_H_

#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "cli/args.h"

namespace anvil::cli {

struct Command {
  CommandSpec spec;
  std::function<absl::Status(const Args&)> run;
};

Command InfoCommand();
Command TokenizeCommand();
Command GenerateCommand();
Command ChatCommand();
Command PerplexityCommand();
Command BenchCommand();
Command DemoCommand();
Command TrainBenchCommand();
Command FinetuneCommand();
Command EvalChatCommand();

inline std::vector<Command> AllCommands() {
  return {InfoCommand(),       TokenizeCommand(), GenerateCommand(), ChatCommand(),
          PerplexityCommand(), BenchCommand(),    DemoCommand(),    FinetuneCommand(),
          EvalChatCommand(),   TrainBenchCommand()};
}

}  // namespace anvil::cli

#endif  // ANVIL_CLI_COMMANDS_H_
