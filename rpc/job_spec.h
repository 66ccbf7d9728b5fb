// Job specs <-> recipes. A recipe file is a FinetuneSpec in protobuf's JSON mapping (proto field
// names), written as YAML: `anvil submit` turns the file into the message, and the coordinator and
// workers turn the message back into the train::Recipe the trainer runs — through the same strict
// recipe parser, so a spec is valid exactly when the equivalent file is.
#ifndef ANVIL_RPC_JOB_SPEC_H_
#define ANVIL_RPC_JOB_SPEC_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "anvil/v1/jobs.pb.h"
#include "anvil/v1/specs.pb.h"
#include "train/recipe.h"

namespace anvil::rpc {

// Parses recipe YAML into a FinetuneSpec. The text is first validated as a recipe (errors name
// `name`, line, column and field), then mapped onto the message with protobuf's JSON parser.
// Relative paths resolve against `base_dir` (made absolute), "~/" against $HOME, so the spec
// means the same on any process of the cluster.
absl::StatusOr<v1::FinetuneSpec> FinetuneSpecFromYaml(std::string_view yaml, std::string_view name,
                                                      std::string_view base_dir);
// Reads a recipe file into a FinetuneSpec (paths relative to the file's directory).
absl::StatusOr<v1::FinetuneSpec> LoadFinetuneSpec(const std::string& path);

// The spec as JSON text with the proto field names (which is also valid recipe YAML).
std::string FinetuneSpecToJson(const v1::FinetuneSpec& spec);

// The recipe a spec stands for. InvalidArgument names the field path under `field_prefix`
// (e.g. "spec.finetune.lora.rank: expected ...").
absl::StatusOr<train::Recipe> RecipeFromSpec(const v1::FinetuneSpec& spec,
                                             std::string_view field_prefix = "spec.finetune");

// Checks an EvalSpec's fields (required paths, limit >= 0, threads 1..256, a known strategy);
// the files themselves are the worker's to open. InvalidArgument with "spec.eval.<field>".
absl::Status ValidateEvalSpec(const v1::EvalSpec& spec);

// QuantizeSpec: input and output required, type one of q8_0, q4_0, q4_1.
absl::Status ValidateQuantizeSpec(const v1::QuantizeSpec& spec);
// DeploySpec: model required, ports 0..65535, threads 1..256, adapter names without '+'/'='.
absl::Status ValidateDeploySpec(const v1::DeploySpec& spec);

// Checks a JobSpec as SubmitJob must: a task is set and valid, worker counts 1..64 with
// min <= max, max_retries 0..100. InvalidArgument with the field path.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

}  // namespace anvil::rpc

#endif  // ANVIL_RPC_JOB_SPEC_H_
