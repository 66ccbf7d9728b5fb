// anvil eval-chat MODEL --data FILE.jsonl: greedy answers to chat records, scored by exact match
// against each record's last assistant message (after trimming whitespace). The prompt is every
// message before that answer, rendered with the model's chat template and its generation prompt,
// exactly as `anvil chat` and the server do. The fine-tuning issue's NER check runs this on the
// test split; the evaluation harness (metrics, few-shot, reports) builds on it later.
#include <cstdio>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/core/status_macros.h"
#include "model/generate.h"
#include "train/dataset.h"

namespace anvil::cli {

Command EvalChatCommand() {
  Command c;
  c.spec = {"eval-chat",
            "Exact match of greedy answers on chat JSONL (the last assistant message of each "
            "record is the reference; the messages before it are the prompt).",
            {"MODEL"},
            {{"data", "PATH", "", "chat JSONL (required)"},
             {"limit", "N", "0", "score at most N records (0 = all)"},
             {"max-tokens", "N", "128", "longest answer generated"},
             {"show", "N", "3", "print the first N mismatches"},
             {"threads", "N", "2", "CPU threads"}}};
  c.run = [](const Args& args) -> absl::Status {
    if (!args.Has("data")) return absl::InvalidArgumentError("--data is required");
    ANVIL_ASSIGN_OR_RETURN(int64_t limit, args.GetInt("limit"));
    ANVIL_ASSIGN_OR_RETURN(int64_t max_tokens, args.GetInt("max-tokens"));
    ANVIL_ASSIGN_OR_RETURN(int64_t show, args.GetInt("show"));
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    if (threads < 1 || threads > 256) return absl::InvalidArgumentError("--threads must be 1..256");
    if (max_tokens < 1) return absl::InvalidArgumentError("--max-tokens must be >= 1");
    ANVIL_ASSIGN_OR_RETURN(train::Dataset data, train::ReadJsonlFile(args.Get("data")));
    if (data.kind != train::DatasetKind::kSft) {
      return absl::InvalidArgumentError(absl::StrCat(args.Get("data"), ": needs chat records"));
    }
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    const auto& tmpl = model->chat_template();
    if (!tmpl) {
      return absl::FailedPreconditionError(
          absl::StrCat(args.positional(0), ": no chat template: ", model->chat_template_error()));
    }
    ContextOptions copts;
    copts.threads = static_cast<int>(threads);
    ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(*model, copts));
    GenerateOptions gopts;
    gopts.max_tokens = static_cast<int32_t>(max_tokens);
    gopts.sampling.temperature = 0.0f;
    for (const std::string& s : tmpl->StopStrings()) gopts.stop.push_back(s);
    int64_t scored = 0, exact = 0, shown = 0;
    for (const train::ChatRecord& r : data.chats) {
      if (limit > 0 && scored >= limit) break;
      size_t last = r.messages.size();
      while (last > 0 && r.messages[last - 1].role != "assistant") --last;
      if (last == 0) continue;  // nothing to score
      const std::vector<ChatMessage> prompt(r.messages.begin(), r.messages.begin() + (last - 1));
      ANVIL_ASSIGN_OR_RETURN(std::string text, tmpl->Render(prompt, /*add_generation_prompt=*/true));
      const std::vector<int32_t> ids = model->tokenizer().Encode(text, true, true);
      ctx->Reset();
      ANVIL_ASSIGN_OR_RETURN(GenerateResult g, Generate(*ctx, ids, gopts));
      const std::string want(absl::StripAsciiWhitespace(r.messages[last - 1].content));
      const std::string got(absl::StripAsciiWhitespace(g.text));
      ++scored;
      if (got == want) {
        ++exact;
      } else if (shown < show) {
        ++shown;
        std::fprintf(stderr, "line %lld: want %s\n             got  %s\n",
                     static_cast<long long>(r.line), want.c_str(), got.c_str());
      }
    }
    if (scored == 0) return absl::InvalidArgumentError("no record with an assistant answer");
    std::printf("exact match %lld/%lld = %.1f%%\n", static_cast<long long>(exact),
                static_cast<long long>(scored), 100.0 * static_cast<double>(exact) / scored);
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
