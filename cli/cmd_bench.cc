// anvil bench MODEL: prefill and decode speed (the anvil side of scripts/bench/vs_llamacpp.sh);
// anvil demo MODEL: the main job of scripts/demo.sh (card, three streamed chats, speed).
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/core/status_macros.h"
#include "model/sampler.h"

namespace anvil::cli {
namespace {

struct Speed {
  double prefill_tok_s = 0;
  double decode_tok_s = 0;
};

// Prefill: `n_prompt` tokens in one Eval from an empty cache. Decode: `n_gen` single-token Evals
// (greedy) after a 16-token prompt. Only the Eval calls are timed.
absl::StatusOr<Speed> MeasureSpeed(Context& ctx, const std::vector<int32_t>& text_tokens,
                                   int64_t n_prompt, int64_t n_gen) {
  using Clock = std::chrono::steady_clock;
  Speed s;
  std::vector<int32_t> prompt(text_tokens.begin(), text_tokens.begin() + n_prompt);
  ctx.Reset();
  auto t0 = Clock::now();
  ANVIL_RETURN_IF_ERROR(ctx.Eval(prompt));
  s.prefill_tok_s = n_prompt / std::chrono::duration<double>(Clock::now() - t0).count();

  ctx.Reset();
  ANVIL_RETURN_IF_ERROR(ctx.Eval(absl::MakeConstSpan(text_tokens).first(16)));
  double seconds = 0;
  for (int64_t i = 0; i < n_gen; ++i) {
    int32_t next = Sampler::Argmax(ctx.logits(ctx.n_logits() - 1), ctx.n_vocab());
    auto t1 = Clock::now();
    ANVIL_RETURN_IF_ERROR(ctx.Eval({&next, 1}));
    seconds += std::chrono::duration<double>(Clock::now() - t1).count();
  }
  s.decode_tok_s = n_gen / seconds;
  ctx.Reset();
  return s;
}

absl::StatusOr<std::vector<int32_t>> BenchTokens(const LlamaModel& model, const std::string& path,
                                                 int64_t need) {
  ANVIL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  std::vector<int32_t> ids = model.tokenizer().Encode(text, true, false);
  if (static_cast<int64_t>(ids.size()) < need) {
    return absl::InvalidArgumentError(absl::StrFormat("%s has %d tokens, the benchmark needs %d",
                                                      path, ids.size(), need));
  }
  return ids;
}

constexpr char kDefaultText[] = "/usr/share/common-licenses/GPL-3";

}  // namespace

Command BenchCommand() {
  Command c;
  c.spec = {"bench",
            "Measure prefill and decode tokens/s; one JSON line per repetition, then medians.",
            {"MODEL"},
            {{"threads", "N", "2", "CPU threads"},
             {"prompt-tokens", "N", "512", "prefill prompt length"},
             {"gen-tokens", "N", "128", "decoded tokens"},
             {"reps", "N", "5", "repetitions"},
             {"text", "PATH", kDefaultText, "text the prompt tokens come from"},
             {"backend", "NAME", "cpu", "kernels: cpu or reference"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    ANVIL_ASSIGN_OR_RETURN(int64_t n_prompt, args.GetInt("prompt-tokens"));
    ANVIL_ASSIGN_OR_RETURN(int64_t n_gen, args.GetInt("gen-tokens"));
    ANVIL_ASSIGN_OR_RETURN(int64_t reps, args.GetInt("reps"));
    if (threads < 1 || n_prompt < 16 || n_gen < 1 || reps < 1) {
      return absl::InvalidArgumentError(
          "--threads, --gen-tokens, --reps must be >= 1 and --prompt-tokens >= 16");
    }
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    ANVIL_ASSIGN_OR_RETURN(auto tokens, BenchTokens(*model, args.Get("text"), n_prompt));
    ContextOptions o;
    o.threads = static_cast<int>(threads);
    o.n_ctx = std::max<int64_t>(n_prompt, 16 + n_gen);
    o.n_batch = n_prompt;
    if (args.Get("backend") == "reference") o.backend = Backend::kReference;
    ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(*model, o));
    std::vector<double> pre, dec;
    for (int64_t r = 0; r < reps; ++r) {
      ANVIL_ASSIGN_OR_RETURN(Speed s, MeasureSpeed(*ctx, tokens, n_prompt, n_gen));
      pre.push_back(s.prefill_tok_s);
      dec.push_back(s.decode_tok_s);
      std::printf(
          "{\"engine\":\"anvil\",\"model\":\"%s\",\"threads\":%lld,\"prompt_tokens\":%lld,"
          "\"gen_tokens\":%lld,\"prefill_tok_s\":%.2f,\"decode_tok_s\":%.2f}\n",
          model->file().name().c_str(), static_cast<long long>(threads),
          static_cast<long long>(n_prompt), static_cast<long long>(n_gen), s.prefill_tok_s,
          s.decode_tok_s);
      std::fflush(stdout);
    }
    std::sort(pre.begin(), pre.end());
    std::sort(dec.begin(), dec.end());
    std::fprintf(stderr, "anvil bench: median prefill %.1f tok/s, decode %.1f tok/s (%lld reps)\n",
                 pre[pre.size() / 2], dec[dec.size() / 2], static_cast<long long>(reps));
    return absl::OkStatus();
  };
  return c;
}

Command DemoCommand() {
  Command c;
  c.spec = {"demo", "The main job: model card, three chat prompts streamed, prefill/decode speed.",
            {"MODEL"},
            {{"threads", "N", "2", "CPU threads"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    if (threads < 1 || threads > 256) return absl::InvalidArgumentError("--threads must be 1..256");
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    std::fputs(ModelCard(*model).c_str(), stdout);
    if (!model->chat_template().has_value()) {
      return absl::FailedPreconditionError(model->chat_template_error());
    }
    const ChatTemplate& tmpl = *model->chat_template();
    ContextOptions o;
    o.threads = static_cast<int>(threads);
    ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(*model, o));
    GenerateOptions g;
    g.max_tokens = 96;
    g.sampling.temperature = 0;  // greedy: the demo prints the same answers every run
    g.sampling.repeat_penalty = 1.15f;  // a 135M model loops without it
    g.stop = tmpl.StopStrings();
    const char* questions[] = {
        "What is the tallest mountain in the world?",
        "Write a haiku about the sea.",
        "Explain in two sentences what a neural network is.",
    };
    for (const char* q : questions) {
      std::printf("\n>>> user: %s\n<<< assistant: ", q);
      std::fflush(stdout);
      ANVIL_ASSIGN_OR_RETURN(std::string text, tmpl.Render({{"user", q}}, true));
      ctx->Reset();
      ANVIL_ASSIGN_OR_RETURN(
          GenerateResult r,
          Generate(*ctx, model->tokenizer().Encode(text, true, true), g, [](std::string_view p) {
            std::fwrite(p.data(), 1, p.size(), stdout);
            std::fflush(stdout);
            return true;
          }));
      std::printf("\n    [%lld prompt tokens at %.1f tok/s, %zu generated at %.1f tok/s, %s]\n",
                  static_cast<long long>(r.prompt_tokens), r.prompt_tokens / r.prefill_seconds,
                  r.tokens.size(), r.tokens.size() / std::max(r.decode_seconds, 1e-9),
                  FinishReasonName(r.finish));
    }
    ANVIL_ASSIGN_OR_RETURN(auto tokens, BenchTokens(*model, kDefaultText, 512));
    ContextOptions bo = o;
    bo.n_ctx = 512 + 128;
    ANVIL_ASSIGN_OR_RETURN(auto bctx, Context::Create(*model, bo));
    std::vector<double> pre, dec;
    for (int r = 0; r < 3; ++r) {
      ANVIL_ASSIGN_OR_RETURN(Speed s, MeasureSpeed(*bctx, tokens, 512, 64));
      pre.push_back(s.prefill_tok_s);
      dec.push_back(s.decode_tok_s);
    }
    std::sort(pre.begin(), pre.end());
    std::sort(dec.begin(), dec.end());
    std::printf("\nspeed (%lld threads, median of 3): prefill %.1f tok/s (512-token prompt), "
                "decode %.1f tok/s\n",
                static_cast<long long>(threads), pre[1], dec[1]);
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
