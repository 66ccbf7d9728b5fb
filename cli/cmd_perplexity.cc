// anvil perplexity MODEL --file F [--ctx 512] [--chunks N]: llama-perplexity's number.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/core/status_macros.h"
#include "model/perplexity.h"

namespace anvil::cli {

Command PerplexityCommand() {
  Command c;
  c.spec = {"perplexity",
            "Perplexity of a text file, computed as llama-perplexity does: non-overlapping "
            "chunks of --ctx tokens, the second half of each chunk scored.",
            {"MODEL"},
            {{"file", "PATH", "", "text file (required)"},
             {"ctx", "N", "512", "tokens per chunk"},
             {"chunks", "N", "-1", "score at most N chunks; -1 = all"},
             {"threads", "N", "2", "CPU threads"},
             {"backend", "NAME", "cpu", "kernels: cpu or reference"}}};
  c.run = [](const Args& args) -> absl::Status {
    if (!args.Has("file")) return absl::InvalidArgumentError("--file is required");
    ANVIL_ASSIGN_OR_RETURN(int64_t n_ctx, args.GetInt("ctx"));
    ANVIL_ASSIGN_OR_RETURN(int64_t chunks, args.GetInt("chunks"));
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    if (n_ctx < 4 || n_ctx > (1 << 20)) return absl::InvalidArgumentError("--ctx must be 4..2^20");
    if (threads < 1 || threads > 256) return absl::InvalidArgumentError("--threads must be 1..256");
    ANVIL_ASSIGN_OR_RETURN(std::string text, ReadTextFile(args.Get("file")));
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    ContextOptions copts;
    copts.n_ctx = n_ctx;
    copts.n_batch = n_ctx;
    copts.threads = static_cast<int>(threads);
    if (args.Get("backend") == "reference") copts.backend = Backend::kReference;
    else if (args.Get("backend") != "cpu") return absl::InvalidArgumentError("--backend must be cpu or reference");
    ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(*model, copts));
    if (ctx->n_ctx() < n_ctx) {
      return absl::InvalidArgumentError("--ctx exceeds the model's training context");
    }
    const std::vector<int32_t> tokens = model->tokenizer().Encode(text, true, false);
    std::fprintf(stderr, "perplexity: %zu tokens, ctx %lld\n", tokens.size(),
                 static_cast<long long>(n_ctx));
    PerplexityOptions popts;
    popts.n_ctx = n_ctx;
    popts.max_chunks = chunks;
    ANVIL_ASSIGN_OR_RETURN(
        PerplexityResult r,
        ComputePerplexity(*ctx, tokens, popts, [](int64_t i, double ppl) {
          std::printf("[%lld]%.4f,", static_cast<long long>(i + 1), ppl);
          std::fflush(stdout);
        }));
    std::printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.uncertainty);
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
