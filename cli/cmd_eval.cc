// anvil eval MODEL TASK.yaml: runs an evaluation task (eval/task.h) through the harness
// (eval/harness.h), prints the headline metrics with bootstrap 95% CIs, and writes the
// byte-reproducible result file with --out. --prompt-sweep runs the task under each prompt
// strategy and names the winner; --dump-prompts writes the exact prompt texts instead of running
// them (for scripts/bench/eval.py, which feeds the same texts to llama.cpp). Timing goes to
// stderr only.
#include <cstdio>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "eval/harness.h"
#include "eval/prompt.h"
#include "eval/task.h"
#include "kernels/core/status_macros.h"
#include "model/file_io.h"

namespace anvil::cli {
namespace {

void PrintTable(const eval::TaskResult& r) {
  if (r.perplexity) {
    std::printf("%-24s %12.4f  +/- %.5f  (%lld chunks of %lld tokens)\n", "perplexity",
                r.perplexity->ppl, r.perplexity->uncertainty,
                static_cast<long long>(r.perplexity->chunks),
                static_cast<long long>(r.perplexity->ctx));
    return;
  }
  std::printf("%-24s %10s  %-21s %6s\n", "metric", "mean", "95% CI", "n");
  for (const eval::MetricSummary& m : r.metrics) {
    std::printf("%-24s %10.4f  [%8.4f, %8.4f] %6lld\n", m.name.c_str(), m.ci.mean, m.ci.low,
                m.ci.high, static_cast<long long>(m.n));
  }
}

// The result file for one strategy of a sweep: results.json -> results.few_shot.json.
std::string SweepPath(const std::string& out, const char* strategy) {
  const size_t dot = out.rfind('.');
  const size_t slash = out.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) {
    return absl::StrCat(out, ".", strategy);
  }
  return absl::StrCat(out.substr(0, dot), ".", strategy, out.substr(dot));
}

// One JSON line per record: id, the prompt text as the chat template renders it (what the model
// is fed, tokenized with special tokens parsed), the reference, max_tokens and the stop strings.
absl::Status DumpPrompts(const LlamaModel& model, const eval::Task& task, int64_t limit,
                         const std::string& path) {
  if (task.kind != eval::TaskKind::kGenerate) {
    return absl::InvalidArgumentError(absl::StrCat("--dump-prompts needs a generate task; ",
                                                   task.source, " is ",
                                                   eval::TaskKindName(task.kind)));
  }
  if (!model.chat_template()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the model has no chat template: ", model.chat_template_error()));
  }
  ANVIL_ASSIGN_OR_RETURN(std::vector<eval::Example> data,
                         eval::LoadExamples(task.data.path, task.data, task.kind,
                                            task.prompt.user));
  std::vector<eval::Example> pool_file;
  const std::vector<eval::Example>* pool = &data;
  const eval::PromptStrategy strategy = task.prompt.strategy;
  if (strategy == eval::PromptStrategy::kFewShot && !task.prompt.few_shot.pool.empty()) {
    ANVIL_ASSIGN_OR_RETURN(pool_file, eval::LoadExamples(task.prompt.few_shot.pool, task.data,
                                                         task.kind, task.prompt.user));
    pool = &pool_file;
  }
  const eval::PromptBuilder prompt(task.prompt, strategy, pool);
  const bool cot = strategy == eval::PromptStrategy::kChainOfThought;
  const int64_t total = limit > 0 ? std::min<int64_t>(limit, static_cast<int64_t>(data.size()))
                                  : static_cast<int64_t>(data.size());
  std::string out;
  for (int64_t i = 0; i < total; ++i) {
    ANVIL_ASSIGN_OR_RETURN(std::string text,
                           prompt.Render(*model.chat_template(), data[i], static_cast<uint64_t>(i)));
    nlohmann::json j;
    j["id"] = data[i].id;
    j["prompt"] = text;
    j["reference"] = data[i].reference;
    j["max_tokens"] = cot ? task.prompt.chain_of_thought.max_tokens : task.generation.max_tokens;
    j["stop"] = model.chat_template()->StopStrings();
    absl::StrAppend(&out, j.dump(), "\n");
  }
  return WriteFileAtomically(path, out);
}

}  // namespace

Command EvalCommand() {
  Command c;
  c.spec = {"eval",
            "Runs an evaluation task (YAML: data, kind, prompt strategy, metrics) on a model; "
            "prints the headline metrics with bootstrap 95% CIs.",
            {"MODEL", "TASK"},
            {{"limit", "N", "0", "score at most N records (0 = all)"},
             {"out", "PATH", "", "write the result JSON here (identical bytes on every rerun)"},
             {"threads", "N", "2", "CPU threads"},
             {"prompt-sweep", "", "", "run zero_shot, few_shot and chain_of_thought; name the "
                                      "best"},
             {"dump-prompts", "FILE", "", "write the rendered prompts (JSONL) and exit"}}};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(int64_t limit, args.GetInt("limit"));
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    if (threads < 1 || threads > 256) return absl::InvalidArgumentError("--threads must be 1..256");
    if (limit < 0) return absl::InvalidArgumentError("--limit must be >= 0");
    ANVIL_ASSIGN_OR_RETURN(eval::Task task, eval::LoadTask(args.positional(1)));
    const bool sweep = args.GetBool("prompt-sweep");
    if (sweep && task.kind != eval::TaskKind::kGenerate) {
      return absl::InvalidArgumentError(
          absl::StrCat("--prompt-sweep needs a generate task; ", task.source, " is ",
                       eval::TaskKindName(task.kind)));
    }
    ANVIL_ASSIGN_OR_RETURN(auto model, LoadModel(args.positional(0)));
    if (args.Has("dump-prompts")) {
      if (sweep) return absl::InvalidArgumentError("--dump-prompts takes no --prompt-sweep");
      return DumpPrompts(*model, task, limit, args.Get("dump-prompts"));
    }
    eval::HarnessOptions opts;
    opts.limit = limit;
    opts.threads = static_cast<int>(threads);
    opts.model_name = args.positional(0);
    opts.progress = [](int64_t done, int64_t total) {
      if (total > 0) std::fprintf(stderr, "\r%lld/%lld", static_cast<long long>(done),
                                  static_cast<long long>(total));
    };
    std::vector<std::optional<eval::PromptStrategy>> runs = {std::nullopt};
    if (sweep) {
      runs = {eval::PromptStrategy::kZeroShot, eval::PromptStrategy::kFewShot,
              eval::PromptStrategy::kChainOfThought};
    }
    std::string best;
    double best_value = -1;
    for (const auto& strategy : runs) {
      opts.strategy = strategy;
      ANVIL_ASSIGN_OR_RETURN(eval::TaskResult r, eval::RunTask(*model, task, opts));
      std::fprintf(stderr, "\r%s: %lld %s in %.1f s\n", task.name.c_str(),
                   static_cast<long long>(r.perplexity ? r.perplexity->chunks
                                                       : static_cast<int64_t>(r.examples.size())),
                   r.perplexity ? "chunks" : "records", r.seconds);
      if (r.strategy.empty()) {
        std::printf("%s\n", task.name.c_str());
      } else {
        std::printf("%s / %s (prompt %s, sha256 %.12s)\n", task.name.c_str(), r.strategy.c_str(),
                    r.prompt_name.c_str(), r.prompt_hash.c_str());
      }
      PrintTable(r);
      if (args.Has("out")) {
        const std::string path =
            sweep ? SweepPath(args.Get("out"), r.strategy.c_str()) : args.Get("out");
        ANVIL_RETURN_IF_ERROR(WriteFileAtomically(path, eval::ResultsJson(r)));
        std::fprintf(stderr, "wrote %s\n", path.c_str());
      }
      if (eval::HeadlineValue(r) > best_value) {
        best_value = eval::HeadlineValue(r);
        best = r.strategy;
      }
    }
    if (sweep) {
      std::printf("best strategy: %s (%s %.4f)\n", best.c_str(), task.metrics[0].name.c_str(),
                  best_value);
    }
    return absl::OkStatus();
  };
  return c;
}

}  // namespace anvil::cli
