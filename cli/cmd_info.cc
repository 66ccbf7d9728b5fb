// anvil info MODEL: the model card and all metadata; anvil tokenize MODEL TEXT: token ids.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/core/status_macros.h"

namespace anvil::cli {

Command InfoCommand() {
  Command c;
  c.spec = {"info", "Print the model card, every metadata key and (with --tensors) the tensors.",
            {"MODEL"},
            {{"tensors", "", "", "also list every tensor with its type and shape"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    std::fputs(ModelCard(*model).c_str(), stdout);
    std::printf("\nmetadata:\n");
    for (const auto& [key, value] : model->file().metadata()) {
      std::printf("  %-40s %s\n", key.c_str(), value.DebugString(6, 160).c_str());
    }
    if (args.GetBool("tensors")) {
      std::printf("\ntensors:\n");
      for (const gguf::TensorInfo& t : model->file().tensors()) {
        const gguf::GgmlTypeInfo* ti = gguf::FindGgmlType(t.ggml_type);
        std::string shape;
        for (size_t i = 0; i < t.shape.size(); ++i) absl::StrAppend(&shape, i ? " x " : "", t.shape[i]);
        std::printf("  %-32s %-6s %s\n", t.name.c_str(), ti ? ti->name : "?", shape.c_str());
      }
    }
    return absl::OkStatus();
  };
  return c;
}

Command TokenizeCommand() {
  Command c;
  c.spec = {"tokenize", "Print the token ids and pieces of TEXT (special tokens are parsed).",
            {"MODEL", "TEXT"},
            {{"no-special", "", "", "do not parse special tokens such as <|im_start|>"},
             {"ids-only", "", "", "print only the ids, space separated"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    const Tokenizer& tok = model->tokenizer();
    const std::vector<int32_t> ids =
        tok.Encode(args.positional(1), /*add_special=*/true, !args.GetBool("no-special"));
    if (args.GetBool("ids-only")) {
      std::string out;
      for (size_t i = 0; i < ids.size(); ++i) absl::StrAppend(&out, i ? " " : "", ids[i]);
      std::printf("%s\n", out.c_str());
      return absl::OkStatus();
    }
    for (int32_t id : ids) {
      std::printf("%6d  '%s'\n", id, tok.TokenToPiece(id, true).c_str());
    }
    std::printf("%zu tokens\n", ids.size());
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
