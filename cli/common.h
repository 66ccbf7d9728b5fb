// Pieces shared by the anvil subcommands: flag sets for sampling and contexts, model loading,
// the model card.
#ifndef ANVIL_CLI_COMMON_H_
#define ANVIL_CLI_COMMON_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "model/generate.h"
#include "model/llama_model.h"

namespace anvil::cli {

std::vector<FlagSpec> ContextFlags();   // --threads --ctx --batch --backend
std::vector<FlagSpec> SamplingFlags();  // --temp --top-k --top-p --min-p --repeat-penalty ...
std::vector<FlagSpec> Concat(std::vector<FlagSpec> a, const std::vector<FlagSpec>& b);

absl::StatusOr<ContextOptions> ParseContextOptions(const Args& args);
absl::StatusOr<GenerateOptions> ParseGenerateOptions(const Args& args);

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModel(const std::string& path);

// Architecture, sizes, quantization, tokenizer and chat template, as printable lines.
std::string ModelCard(const LlamaModel& model);

// Reads a whole file: NotFound / InvalidArgument naming it.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

}  // namespace anvil::cli

#endif  // ANVIL_CLI_COMMON_H_
