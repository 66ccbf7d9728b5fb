// Running tasks: one Context per run, records in file order, greedy by default. Multiple choice
// follows lm-evaluation-harness: the continuation's tokens are those of encode(context + choice)
// past encode(context), fed after the context's tokens, and their log-probabilities summed.
#include "eval/harness.h"

#include <chrono>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "eval/bleu.h"
#include "eval/chrf.h"
#include "eval/exact_match.h"
#include "eval/field_f1.h"
#include "eval/pass_at_k.h"
#include "eval/prompt.h"
#include "eval/rouge.h"
#include "eval/token_f1.h"
#include "kernels/core/status_macros.h"
#include "model/generate.h"
#include "model/perplexity.h"
#include "model/sha256.h"

namespace anvil::eval {
namespace {

using Scores = std::vector<std::pair<std::string, double>>;

absl::StatusOr<Scores> ScoreAnswer(const Task& task, const std::string& pred,
                                   const std::string& ref, const Example& ex) {
  Scores out;
  for (const MetricSpec& m : task.metrics) {
    switch (m.kind) {
      case MetricKind::kExactMatch: {
        bool same = false;
        if (m.normalize == Normalization::kJson) {
          same = ExactMatchJsonOrText(pred, ref);
        } else {
          ANVIL_ASSIGN_OR_RETURN(same, ExactMatch(pred, ref, m.normalize));
        }
        out.emplace_back(m.name, same ? 1.0 : 0.0);
        break;
      }
      case MetricKind::kTokenF1:
        out.emplace_back(m.name, TokenF1(pred, ref).f1);
        break;
      case MetricKind::kRougeL:
        out.emplace_back(m.name, RougeL(pred, ref).fmeasure);
        break;
      case MetricKind::kChrf:
        out.emplace_back(m.name, SentenceChrf(pred, ref));
        break;
      case MetricKind::kBleu:
        out.emplace_back(m.name, SentenceBleu(pred, ref).score);
        break;
      case MetricKind::kFieldF1: {
        ANVIL_ASSIGN_OR_RETURN(FieldF1Result f, FieldF1(pred, ref));
        const std::string prefix = m.name == "field_f1" ? "field" : m.name;
        out.emplace_back(absl::StrCat(prefix, "_precision"), f.precision);
        out.emplace_back(absl::StrCat(prefix, "_recall"), f.recall);
        out.emplace_back(m.name == "field_f1" ? "field_f1" : absl::StrCat(prefix, "_f1"), f.f1);
        break;
      }
      case MetricKind::kPassAt1: {
        ANVIL_ASSIGN_OR_RETURN(double pass, PassAt1(m.check, pred, ex.fields));
        out.emplace_back(m.name, pass);
        break;
      }
    }
  }
  return out;
}

// Sum of log p(continuation | context) for each choice. `ctx` is left holding the context.
absl::StatusOr<std::vector<double>> ChoiceLogLikelihoods(Context& ctx, const std::string& context,
                                                         const std::vector<std::string>& choices) {
  const Tokenizer& tok = ctx.model().tokenizer();
  const std::vector<int32_t> head = tok.Encode(context, true, true);
  if (head.empty()) return absl::InvalidArgumentError("empty multiple-choice context");
  ctx.Reset();
  if (head.size() > 1) {
    ANVIL_RETURN_IF_ERROR(ctx.Eval(absl::MakeConstSpan(head).first(head.size() - 1)));
  }
  std::vector<double> out;
  for (const std::string& choice : choices) {
    const std::vector<int32_t> whole = tok.Encode(context + choice, true, true);
    if (whole.size() <= head.size()) {
      return absl::InvalidArgumentError(absl::StrCat("choice \"", choice, "\" adds no tokens"));
    }
    const std::vector<int32_t> cont(whole.begin() + head.size(), whole.end());
    std::vector<int32_t> input = {head.back()};
    input.insert(input.end(), cont.begin(), cont.end() - 1);
    ctx.Truncate(static_cast<int64_t>(head.size()) - 1);
    ANVIL_RETURN_IF_ERROR(ctx.Eval(input, LogitsRequest::All()));
    double sum = 0;
    for (size_t j = 0; j < cont.size(); ++j) {
      const float* logits = ctx.logits(static_cast<int64_t>(j));  // [V]
      double mx = logits[0];
      for (int64_t v = 1; v < ctx.n_vocab(); ++v) mx = std::max<double>(mx, logits[v]);
      double z = 0;
      for (int64_t v = 0; v < ctx.n_vocab(); ++v) z += std::exp(logits[v] - mx);
      sum += logits[cont[j]] - mx - std::log(z);
    }
    out.push_back(sum);
  }
  return out;
}

// Index of the largest value; the first on ties (numpy.argmax).
size_t ArgMax(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}

absl::StatusOr<ExampleResult> RunRecord(Context& ctx, const Task& task, const PromptBuilder& prompt,
                                        const Example& ex, uint64_t index) {
  const ChatTemplate& tmpl = *ctx.model().chat_template();
  ANVIL_ASSIGN_OR_RETURN(std::string text, prompt.Render(tmpl, ex, index));
  ExampleResult r;
  r.id = ex.id;
  r.reference = ex.reference;
  if (task.kind == TaskKind::kMultipleChoice) {
    ANVIL_ASSIGN_OR_RETURN(r.loglikelihoods, ChoiceLogLikelihoods(ctx, text, ex.choices));
    std::vector<double> norm;
    for (size_t i = 0; i < ex.choices.size(); ++i) {
      norm.push_back(r.loglikelihoods[i] / std::max<size_t>(ex.choices[i].size(), 1));
    }
    const size_t pick = ArgMax(r.loglikelihoods);
    r.prediction = ex.choices[pick];
    r.scores = {{"acc", pick == static_cast<size_t>(ex.answer) ? 1.0 : 0.0},
                {"acc_norm", ArgMax(norm) == static_cast<size_t>(ex.answer) ? 1.0 : 0.0}};
    return r;
  }
  const bool cot = prompt.strategy() == PromptStrategy::kChainOfThought;
  GenerateOptions g;
  g.max_tokens = static_cast<int32_t>(cot ? task.prompt.chain_of_thought.max_tokens
                                          : task.generation.max_tokens);
  g.sampling.temperature = static_cast<float>(task.generation.temperature);
  g.sampling.top_k = static_cast<int32_t>(task.generation.top_k);
  g.sampling.top_p = static_cast<float>(task.generation.top_p);
  g.sampling.seed = task.generation.seed + index;
  g.stop = tmpl.StopStrings();
  ctx.Reset();
  const std::vector<int32_t> ids = ctx.model().tokenizer().Encode(text, true, true);
  const int64_t room = ctx.n_ctx() - static_cast<int64_t>(ids.size());
  if (room < 1) {
    return absl::ResourceExhaustedError(absl::StrCat("the prompt has ", ids.size(),
                                                     " tokens; the context holds ", ctx.n_ctx()));
  }
  g.max_tokens = static_cast<int32_t>(std::min<int64_t>(g.max_tokens, room));
  ANVIL_ASSIGN_OR_RETURN(GenerateResult gen, Generate(ctx, ids, g));
  if (cot) {
    r.output = gen.text;
    r.prediction = ExtractAnswer(gen.text, task.prompt.chain_of_thought).value_or("");
  } else {
    r.prediction = std::string(absl::StripAsciiWhitespace(gen.text));
  }
  ANVIL_ASSIGN_OR_RETURN(r.scores, ScoreAnswer(task, r.prediction, r.reference, ex));
  return r;
}


absl::Status RunPerplexity(const LlamaModel& model, const Task& task,
                           const HarnessOptions& options, const std::string& text,
                           TaskResult* result) {
  ContextOptions copts;
  copts.n_ctx = task.perplexity.ctx;
  copts.n_batch = task.perplexity.ctx;
  copts.threads = options.threads;
  ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(model, copts));
  const std::vector<int32_t> tokens = model.tokenizer().Encode(text, true, false);
  PerplexityOptions popts;
  popts.n_ctx = task.perplexity.ctx;
  popts.max_chunks = task.perplexity.chunks;
  ANVIL_ASSIGN_OR_RETURN(PerplexityResult p,
                         ComputePerplexity(*ctx, tokens, popts, [&](int64_t i, double) {
                           if (options.progress) options.progress(i + 1, -1);
                         }));
  PerplexitySummary s;
  s.ppl = p.ppl;
  s.uncertainty = p.uncertainty;
  s.mean_nll = p.mean_nll;
  s.scored_tokens = p.scored_tokens;
  s.chunks = p.chunks;
  s.ctx = task.perplexity.ctx;
  s.running_ppl = p.running_ppl;
  result->perplexity = s;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TaskResult> RunTask(const LlamaModel& model, const Task& task,
                                   const HarnessOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  TaskResult result;
  result.task_name = task.name;
  result.task_file = task.source;
  result.kind = TaskKindName(task.kind);
  result.data_file = task.data.path_as_written;
  result.model = options.model_name;
  ANVIL_ASSIGN_OR_RETURN(std::string data_text, ReadWholeFile(task.data.path));
  result.data_sha256 = Sha256Hex(data_text);
  if (options.num_shards < 1 || options.shard < 0 || options.shard >= options.num_shards) {
    return absl::InvalidArgumentError(absl::StrCat("shard ", options.shard, " is not in [0, ",
                                                   options.num_shards, ")"));
  }
  if (task.kind == TaskKind::kPerplexity) {
    if (options.shard == 0) {
      ANVIL_RETURN_IF_ERROR(RunPerplexity(model, task, options, data_text, &result));
    }
  } else {
    if (!model.chat_template()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the model has no chat template: ", model.chat_template_error()));
    }
    ANVIL_ASSIGN_OR_RETURN(std::vector<Example> data,
                           ParseExamples(data_text, task.data.path, task.data, task.kind,
                                         task.prompt.user));
    const PromptStrategy strategy = options.strategy.value_or(task.prompt.strategy);
    std::vector<Example> pool_file;
    const std::vector<Example>* pool = &data;
    if (strategy == PromptStrategy::kFewShot && !task.prompt.few_shot.pool.empty()) {
      ANVIL_ASSIGN_OR_RETURN(pool_file, LoadExamples(task.prompt.few_shot.pool, task.data,
                                                     task.kind, task.prompt.user));
      pool = &pool_file;
    }
    PromptBuilder prompt(task.prompt, strategy, pool);
    result.prompt_name = prompt.name();
    result.prompt_hash = prompt.hash();
    result.strategy = PromptStrategyName(strategy);
    if (task.kind == TaskKind::kGenerate) {
      result.max_tokens = strategy == PromptStrategy::kChainOfThought
                              ? task.prompt.chain_of_thought.max_tokens
                              : task.generation.max_tokens;
      result.temperature = task.generation.temperature;
      result.seed = task.generation.seed;
    }
    ContextOptions copts;
    copts.threads = options.threads;
    ANVIL_ASSIGN_OR_RETURN(auto ctx, Context::Create(model, copts));
    const int64_t total = options.limit > 0
                              ? std::min<int64_t>(options.limit, static_cast<int64_t>(data.size()))
                              : static_cast<int64_t>(data.size());
    for (int64_t i = options.shard; i < total; i += options.num_shards) {
      if (options.should_stop && options.should_stop()) {
        return absl::CancelledError(absl::StrCat("stopped after ", result.examples.size(),
                                                 " records"));
      }
      absl::StatusOr<ExampleResult> r = RunRecord(*ctx, task, prompt, data[i], i);
      if (!r.ok()) {
        return absl::Status(r.status().code(), absl::StrCat(task.data.path, ":", data[i].line,
                                                            ": ", r.status().message()));
      }
      result.examples.push_back(*std::move(r));
      if (options.progress) {
        options.progress(static_cast<int64_t>(result.examples.size()),
                         (total - options.shard + options.num_shards - 1) / options.num_shards);
      }
    }
    if (options.num_shards == 1) {
      ANVIL_RETURN_IF_ERROR(SummarizeExamples(options.bootstrap, &result));
    }
  }
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

absl::Status SummarizeExamples(const BootstrapOptions& bootstrap, TaskResult* result) {
  if (result->examples.empty()) return absl::InvalidArgumentError("no records were scored");
  const Scores& names = result->examples[0].scores;
  for (size_t m = 0; m < names.size(); ++m) {
    std::vector<double> values;
    for (const ExampleResult& e : result->examples) values.push_back(e.scores[m].second);
    MetricSummary s;
    s.name = names[m].first;
    s.n = static_cast<int64_t>(values.size());
    ANVIL_ASSIGN_OR_RETURN(s.ci, BootstrapMeanCi(values, bootstrap));
    result->metrics.push_back(s);
  }
  return absl::OkStatus();
}

double HeadlineValue(const TaskResult& result) {
  if (result.perplexity) return result.perplexity->ppl;
  return result.metrics.empty() ? 0.0 : result.metrics[0].ci.mean;
}

}  // namespace anvil::eval
