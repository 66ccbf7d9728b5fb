// llama-perplexity's algorithm: per chunk, logits for every position (top-1 is recorded for all
// of them), NLL of positions n_ctx/2 .. n_ctx-2 predicting the next token (exp in float, sums in
// double).
#include "model/perplexity.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "model/sampler.h"

namespace anvil {

absl::StatusOr<PerplexityResult> ComputePerplexity(
    Context& ctx, absl::Span<const int32_t> tokens, const PerplexityOptions& options,
    const std::function<void(int64_t, double)>& on_chunk) {
  const int64_t n_ctx = options.n_ctx;
  const int64_t n_tokens = static_cast<int64_t>(tokens.size());
  if (n_ctx < 4) return absl::InvalidArgumentError("perplexity: n_ctx must be at least 4");
  if (n_ctx > ctx.n_ctx()) {
    return absl::InvalidArgumentError(absl::StrCat("perplexity: n_ctx ", n_ctx,
                                                   " exceeds the context size ", ctx.n_ctx()));
  }
  if (n_tokens < 2 * n_ctx) {
    return absl::FailedPreconditionError(absl::StrCat(
        "perplexity: need at least ", 2 * n_ctx, " tokens for n_ctx ", n_ctx, ", the text has ",
        n_tokens));
  }
  int64_t n_chunk = n_tokens / n_ctx;
  if (options.max_chunks >= 0) n_chunk = std::min(n_chunk, options.max_chunks);
  const Tokenizer& tok = ctx.model().tokenizer();
  const int64_t first = n_ctx / 2;
  const int64_t n_vocab = ctx.n_vocab();

  PerplexityResult r;
  r.chunks = n_chunk;
  double nll = 0.0, nll2 = 0.0;
  int64_t count = 0;
  std::vector<int32_t> chunk(static_cast<size_t>(n_ctx));
  for (int64_t i = 0; i < n_chunk; ++i) {
    std::copy_n(tokens.begin() + i * n_ctx, n_ctx, chunk.begin());
    if (tok.add_bos() && tok.bos_id() >= 0) chunk[0] = tok.bos_id();
    ctx.Reset();
    const int64_t from = options.top1_all_positions ? 0 : first;
    ANVIL_RETURN_IF_ERROR(ctx.Eval(chunk, LogitsRequest::From(from)));
    if (options.top1_all_positions) {
      for (int64_t j = 0; j < n_ctx; ++j) {
        r.top1.push_back(Sampler::Argmax(ctx.logits(j), n_vocab));
      }
    }
    for (int64_t j = first; j < n_ctx - 1; ++j) {
      const float* z = ctx.logits(j - from);
      const int32_t y = tokens[i * n_ctx + j + 1];
      float mx = z[0];
      for (int64_t v = 1; v < n_vocab; ++v) mx = std::max(mx, z[v]);
      double sum = 0.0;
      for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(z[v] - mx);
      const double v = -(static_cast<double>(z[y]) - mx - std::log(sum));
      nll += v;
      nll2 += v * v;
      ++count;
    }
    r.running_ppl.push_back(std::exp(nll / count));
    if (on_chunk) on_chunk(i, r.running_ppl.back());
  }
  ctx.Reset();
  r.scored_tokens = count;
  r.mean_nll = nll / count;
  r.ppl = std::exp(r.mean_nll);
  const double var = nll2 / count - r.mean_nll * r.mean_nll;
  r.uncertainty = count > 1 && var > 0 ? r.ppl * std::sqrt(var / (count - 1)) : 0.0;
  return r;
}

}  // namespace anvil
