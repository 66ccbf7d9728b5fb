// anvil generate MODEL --prompt ... (raw or --chat formatted) and anvil chat MODEL (interactive,
// chat template, streaming).
#include <cstdio>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/core/status_macros.h"

namespace anvil::cli {
namespace {

bool PrintPiece(std::string_view piece) {
  std::fwrite(piece.data(), 1, piece.size(), stdout);
  std::fflush(stdout);
  return true;
}

void PrintStats(const GenerateResult& r) {
  std::fprintf(stderr, "\n[%lld prompt tokens: %.1f tok/s prefill | %zu tokens: %.1f tok/s decode | %s]\n",
               static_cast<long long>(r.prompt_tokens),
               r.prefill_seconds > 0 ? r.prompt_tokens / r.prefill_seconds : 0.0, r.tokens.size(),
               r.decode_seconds > 0 ? r.tokens.size() / r.decode_seconds : 0.0,
               FinishReasonName(r.finish));
}

absl::StatusOr<const ChatTemplate*> RequireTemplate(const LlamaModel& model) {
  if (!model.chat_template().has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("no usable chat template: ", model.chat_template_error()));
  }
  return &*model.chat_template();
}

}  // namespace

Command GenerateCommand() {
  Command c;
  c.spec = {"generate", "Continue a prompt (or answer it as a chat turn with --chat), streaming.",
            {"MODEL"},
            Concat(Concat({{"prompt", "TEXT", "", "the prompt (required)"},
                           {"chat", "", "", "wrap the prompt in the model's chat template"},
                           {"system", "TEXT", "", "system message (with --chat)"}},
                          SamplingFlags()),
                   ContextFlags())};
  c.run = [](const Args& args) -> absl::Status {
    if (!args.Has("prompt")) return absl::InvalidArgumentError("--prompt is required");
    ANVIL_ASSIGN_OR_RETURN(ContextOptions copts, ParseContextOptions(args));
    ANVIL_ASSIGN_OR_RETURN(GenerateOptions gopts, ParseGenerateOptions(args));
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    std::string text = args.Get("prompt");
    if (args.GetBool("chat")) {
      ANVIL_ASSIGN_OR_RETURN(const ChatTemplate* tmpl, RequireTemplate(*model));
      std::vector<ChatMessage> msgs;
      if (args.Has("system")) msgs.push_back({"system", args.Get("system")});
      msgs.push_back({"user", text});
      ANVIL_ASSIGN_OR_RETURN(text, tmpl->Render(msgs, /*add_generation_prompt=*/true));
      for (const std::string& s : tmpl->StopStrings()) gopts.stop.push_back(s);
    }
    ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(*model, copts));
    const std::vector<int32_t> prompt = model->tokenizer().Encode(text, true, true);
    if (!args.GetBool("chat")) PrintPiece(args.Get("prompt"));
    ANVIL_ASSIGN_OR_RETURN(GenerateResult r, Generate(*ctx, prompt, gopts, PrintPiece));
    std::printf("\n");
    PrintStats(r);
    return absl::OkStatus();
  };
  return c;
}

Command ChatCommand() {
  Command c;
  c.spec = {"chat",
            "Interactive chat with the model's chat template; answers stream as they are "
            "generated. Type /reset to start over, /quit or end of input to leave.",
            {"MODEL"},
            Concat(Concat({{"system", "TEXT", "", "system message (default: the template's)"}},
                          SamplingFlags()),
                   ContextFlags())};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ContextOptions copts, ParseContextOptions(args));
    ANVIL_ASSIGN_OR_RETURN(GenerateOptions gopts, ParseGenerateOptions(args));
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    ANVIL_ASSIGN_OR_RETURN(const ChatTemplate* tmpl, RequireTemplate(*model));
    for (const std::string& s : tmpl->StopStrings()) gopts.stop.push_back(s);
    ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(*model, copts));
    std::vector<ChatMessage> history;
    if (args.Has("system")) history.push_back({"system", args.Get("system")});
    const size_t base = history.size();
    std::fprintf(stderr, "anvil chat: %s (%s template). /reset, /quit\n",
                 model->file().name().c_str(), ChatFamilyName(tmpl->family()));
    std::string line;
    std::vector<int32_t> cached;  // the tokens whose K/V are in the cache
    for (;;) {
      std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line) || line == "/quit") break;
      if (line == "/reset") {
        history.resize(base);
        cached.clear();
        ctx->Reset();
        continue;
      }
      if (line.empty()) continue;
      history.push_back({"user", line});
      ANVIL_ASSIGN_OR_RETURN(std::string text, tmpl->Render(history, true));
      // The whole conversation is re-rendered; the KV cache keeps the common token prefix so
      // only the new turn is prefilled.
      const std::vector<int32_t> ids = model->tokenizer().Encode(text, true, true);
      size_t common = 0;
      while (common + 1 < ids.size() && common < cached.size() && cached[common] == ids[common]) {
        ++common;
      }
      ctx->Truncate(static_cast<int64_t>(common));
      ANVIL_ASSIGN_OR_RETURN(
          GenerateResult r,
          Generate(*ctx, absl::MakeConstSpan(ids).subspan(common), gopts, PrintPiece));
      cached = ids;
      cached.insert(cached.end(), r.tokens.begin(), r.tokens.end());
      cached.resize(static_cast<size_t>(ctx->n_past()));  // what the cache really holds
      std::printf("\n");
      PrintStats(r);
      history.push_back({"assistant", r.text});
    }
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
