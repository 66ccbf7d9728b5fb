// anvil quantize IN OUT --type q8_0|q4_0|q4_1 [--pure] [--output-type T]: llama-quantize's
// output for the same F32/F16/BF16 input (model/quantize.h).
// anvil merge BASE ADAPTER OUT [--type f32|f16]: a LoRA adapter (llama.cpp adapter GGUF or PEFT
// directory) merged into the base, W + scale·B·A (train/adapter_read.h, train/export.h).
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "kernels/core/status_macros.h"
#include "model/gguf.h"
#include "model/quantize.h"
#include "train/adapter_read.h"
#include "train/export.h"

namespace anvil::cli {
namespace {

absl::StatusOr<uint32_t> ParseOutputType(const std::string& s) {
  const std::string t = absl::AsciiStrToLower(s);
  if (t == "f32") return 0u;
  if (t == "f16") return 1u;
  if (t == "q4_0") return 2u;
  if (t == "q4_1") return 3u;
  if (t == "q8_0") return 8u;
  return absl::InvalidArgumentError(
      absl::StrCat("--output-type ", s, ": expected f32, f16, q8_0, q4_0 or q4_1"));
}

double MiB(uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); }

}  // namespace

Command QuantizeCommand() {
  Command c;
  c.spec = {"quantize",
            "Quantize a GGUF model (F32/F16/BF16 tensors) to Q8_0, Q4_0 or Q4_1 exactly as "
            "llama-quantize does: same per-tensor types and bytes, metadata and tokenizer kept.",
            {"IN", "OUT"},
            {{"type", "T", "", "q8_0, q4_0 or q4_1 (required)"},
             {"pure", "", "", "every quantizable tensor gets --type (no output/embedding rule)"},
             {"output-type", "T", "",
              "type of output.weight (token_embd.weight when tied): f32, f16, q8_0, q4_0, q4_1"}}};
  c.run = [](const Args& args) -> absl::Status {
    if (!args.Has("type"))
      return absl::InvalidArgumentError("--type is required (q8_0, q4_0, q4_1)");
    ANVIL_ASSIGN_OR_RETURN(const QuantFileType type, ParseQuantFileType(args.Get("type")));
    QuantizeOptions options;
    options.pure = args.GetBool("pure");
    if (args.Has("output-type")) {
      ANVIL_ASSIGN_OR_RETURN(options.output_tensor_type, ParseOutputType(args.Get("output-type")));
    }
    ANVIL_ASSIGN_OR_RETURN(const QuantizeReport r,
                           QuantizeGguf(args.positional(0), args.positional(1), type, options));
    std::vector<std::string> counts;
    for (const auto& [name, n] : r.type_counts) counts.push_back(absl::StrCat(name, ": ", n));
    std::printf("%s -> %s (%s%s): %lld tensors (%s), %.2f MiB -> %.2f MiB\n",
                args.positional(0).c_str(), args.positional(1).c_str(), QuantFileTypeName(type),
                options.pure ? ", pure" : "", static_cast<long long>(r.tensors),
                absl::StrJoin(counts, ", ").c_str(), MiB(r.input_bytes), MiB(r.output_bytes));
    return absl::OkStatus();
  };
  return c;
}

Command MergeCommand() {
  Command c;
  c.spec = {"merge",
            "Merge a LoRA adapter (llama.cpp adapter GGUF, a PEFT directory with "
            "adapter_config.json and adapter_model.safetensors, or a LoRA/QLoRA training "
            "checkpoint ckpt-*.safetensors) into its base model: "
            "W + scale*B*A, written as an F32 or F16 GGUF.",
            {"BASE", "ADAPTER", "OUT"},
            {{"type", "T", "f32", "f32 or f16 (2-D tensors; norms stay F32)"}}};
  c.run = [](const Args& args) -> absl::Status {
    const std::string t = absl::AsciiStrToLower(args.Get("type"));
    if (t != "f32" && t != "f16") {
      return absl::InvalidArgumentError(absl::StrCat("--type ", args.Get("type"), ": f32 or f16"));
    }
    ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> base,
                           gguf::GgufFile::Open(args.positional(0)));
    ANVIL_ASSIGN_OR_RETURN(const LoraAdapters lora, train::ReadAdapter(args.positional(1), *base));
    ANVIL_RETURN_IF_ERROR(train::WriteMergedGguf(
        *base, &lora, {}, t == "f16" ? DType::kF16 : DType::kF32, args.positional(2)));
    std::printf("%s + %s (%zu LoRA pairs, rank %lld, scale %g) -> %s (%s)\n",
                args.positional(0).c_str(), args.positional(1).c_str(), lora.pairs.size(),
                static_cast<long long>(lora.config.rank), lora.config.scale(),
                args.positional(2).c_str(), t.c_str());
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
