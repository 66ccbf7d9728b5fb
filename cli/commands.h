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
Command EvalCommand();  // cmd_eval.cc: anvil eval MODEL TASK.yaml
Command CompareCommand();  // cmd_compare.cc: anvil compare RESULTS.json...
Command QuantizeCommand();  // cmd_quantize.cc: anvil quantize IN OUT --type T
Command MergeCommand();     // cmd_quantize.cc: anvil merge BASE ADAPTER OUT
#ifdef ANVIL_WITH_CLUSTER
// cmd_cluster.cc, cmd_up.cc, cmd_artifacts.cc: submit, jobs, watch, logs, cancel, up, models,
// download.
Command UpCommand();
Command ServeCommand();  // cmd_serve.cc: anvil serve MODEL (execs anvil-server)
std::vector<Command> ArtifactCommands();
std::vector<Command> ClusterCommands();
#endif

inline std::vector<Command> AllCommands() {
  std::vector<Command> all = {InfoCommand(),       TokenizeCommand(), GenerateCommand(),
                              ChatCommand(),       PerplexityCommand(), BenchCommand(),
                              DemoCommand(),       FinetuneCommand(), EvalChatCommand(),
                              EvalCommand(),       TrainBenchCommand(), CompareCommand(),
                              QuantizeCommand(),   MergeCommand()};
#ifdef ANVIL_WITH_CLUSTER
  for (Command& c : ClusterCommands()) all.push_back(std::move(c));
  all.push_back(ServeCommand());
#endif
  return all;
}

}  // namespace anvil::cli

#endif  // ANVIL_CLI_COMMANDS_H_
