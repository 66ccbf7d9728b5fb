// Task parsing: the strict YAML field reader of train/yaml_fields.h walks the file (types,
// ranges, unknown and duplicate keys with file:line:column), then cross-field rules (which
// sections each kind allows) and path resolution. Every problem is collected and reported at once.
#include "eval/task.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <filesystem>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "train/yaml_fields.h"

namespace anvil::eval {
namespace {

using train::Choices;
using train::Errors;
using train::Section;

constexpr size_t kMaxTaskBytes = 1 << 20;


void ReadData(Section& top, Errors* errors, Task* t) {
  Section data = top.Child("data");
  data.String("path", &t->data.path);
  if (t->kind == TaskKind::kPerplexity) t->data.format = DataFormat::kText;
  data.Enum<DataFormat>("format", Choices<DataFormat>(3, DataFormatName), &t->data.format);
  data.String("reference", &t->data.reference);
  data.String("choices", &t->data.choices);
  data.String("id", &t->data.id);
  data.Finish();
  if (!data.Has("path")) errors->Add(top.KeyNode("data"), "data.path", "missing (a JSONL file)");
  const bool text = t->data.format == DataFormat::kText;
  if (t->kind == TaskKind::kPerplexity && !text) {
    errors->Add(data.KeyNode("format"), "data.format", "must be text for kind perplexity");
  }
  if (t->kind != TaskKind::kPerplexity && text) {
    errors->Add(data.KeyNode("format"), "data.format", "text is only for kind perplexity");
  }
  if (t->kind != TaskKind::kMultipleChoice && data.Has("choices")) {
    errors->Add(data.KeyNode("choices"), "data.choices", "only for kind multiple_choice");
  }
  if (t->data.format == DataFormat::kChat && t->kind == TaskKind::kMultipleChoice) {
    errors->Add(data.KeyNode("format"), "data.format", "multiple_choice needs fields records");
  }
  t->data.path_as_written = t->data.path;
}

void ReadPrompt(Section& top, Errors* errors, Task* t) {
  PromptSpec& p = t->prompt;
  Section prompt = top.Child("prompt");
  prompt.String("name", &p.name);
  prompt.String("system", &p.system);
  prompt.String("user", &p.user);
  prompt.Enum<PromptStrategy>("strategy", Choices<PromptStrategy>(3, PromptStrategyName),
                              &p.strategy);
  Section few = prompt.Child("few_shot");
  few.Int("k", &p.few_shot.k, 1, 64);
  few.String("pool", &p.few_shot.pool);
  few.Seed("seed", &p.few_shot.seed);
  few.Bool("multi_turn", &p.few_shot.multi_turn);
  few.String("separator", &p.few_shot.separator);
  few.Finish();
  Section cot = prompt.Child("chain_of_thought");
  cot.String("instruction", &p.chain_of_thought.instruction);
  cot.String("marker", &p.chain_of_thought.marker);
  cot.String("regex", &p.chain_of_thought.regex);
  cot.Int("max_tokens", &p.chain_of_thought.max_tokens, 1, 1 << 16);
  cot.Finish();
  prompt.Finish();
  p.few_shot.pool_as_written = p.few_shot.pool;
  if (absl::StatusOr<std::vector<std::string>> v = TemplateVariables(p.user); !v.ok()) {
    errors->Add(prompt.KeyNode("user"), "prompt.user", std::string(v.status().message()));
  }
  if (cot.Has("marker") && cot.Has("regex")) {
    errors->Add(cot.KeyNode("regex"), "prompt.chain_of_thought.regex",
                "give either marker or regex, not both");
  }
  if (!p.chain_of_thought.regex.empty()) {
    try {
      std::regex re(p.chain_of_thought.regex, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      errors->Add(cot.KeyNode("regex"), "prompt.chain_of_thought.regex",
                  absl::StrCat("not a valid regular expression: ", e.what()));
    }
  }
  if (t->kind == TaskKind::kMultipleChoice && p.strategy == PromptStrategy::kChainOfThought) {
    errors->Add(prompt.KeyNode("strategy"), "prompt.strategy",
                "chain_of_thought needs generated text; multiple_choice scores log-likelihoods");
  }
}

void ReadMetrics(Section& top, Errors* errors, Task* t) {
  const YAML::Node list = top.Raw("metrics");
  if (!list.IsDefined()) {
    if (t->kind == TaskKind::kGenerate) {
      errors->Add(nullptr, "metrics", "missing (a list such as [{kind: exact_match}])");
    }
    return;
  }
  if (t->kind != TaskKind::kGenerate) {
    errors->Add(top.KeyNode("metrics"), "metrics",
                absl::StrCat("only for kind generate (", TaskKindName(t->kind),
                             t->kind == TaskKind::kMultipleChoice ? " reports acc and acc_norm)"
                                                                  : " reports perplexity)"));
    return;
  }
  if (!list.IsSequence() || list.size() == 0) {
    errors->Add(&list, "metrics", absl::StrCat("expected a non-empty list, got ",
                                               train::Describe(list)));
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = absl::StrCat("metrics[", i, "]");
    const YAML::Node item = list[i];
    Section m(item, path, errors);
    MetricSpec spec;
    m.Enum<MetricKind>("kind", Choices<MetricKind>(7, MetricKindName), &spec.kind);
    std::string norm;
    m.String("normalize", &norm);
    m.String("name", &spec.name);
    ReadCodeCheck(m, errors, path, spec.kind == MetricKind::kPassAt1, &spec.check);
    m.Finish();
    if (!m.Has("kind")) errors->Add(&item, absl::StrCat(path, ".kind"), "missing");
    if (!norm.empty()) {
      absl::StatusOr<Normalization> n = ParseNormalization(norm);
      if (!n.ok()) {
        errors->Add(m.KeyNode("normalize"), absl::StrCat(path, ".normalize"),
                    std::string(n.status().message()));
      } else if (spec.kind != MetricKind::kExactMatch) {
        errors->Add(m.KeyNode("normalize"), absl::StrCat(path, ".normalize"),
                    "only for exact_match (the other metrics carry their own tokenizers)");
      } else {
        spec.normalize = *n;
      }
    }
    if (spec.name.empty()) {
      spec.name = MetricKindName(spec.kind);
      if (spec.kind == MetricKind::kExactMatch && spec.normalize != Normalization::kWhitespace) {
        absl::StrAppend(&spec.name, "_", NormalizationName(spec.normalize));
      }
    }
    if (!names.insert(spec.name).second) {
      errors->Add(&item, path, absl::StrCat("a second metric named \"", spec.name,
                                               "\" (give one a name)"));
    }
    t->metrics.push_back(spec);
  }
}

void ReadLimits(Section& top, Errors* errors, Task* t) {
  Section gen = top.Child("generation");
  gen.Int("max_tokens", &t->generation.max_tokens, 1, 1 << 16);
  gen.Number("temperature", &t->generation.temperature, train::kNonNegative);
  gen.Int("top_k", &t->generation.top_k, 0, 1 << 20);
  gen.Number("top_p", &t->generation.top_p, train::Range{0, 1, true, false});
  gen.Seed("seed", &t->generation.seed);
  gen.Finish();
  Section ppl = top.Child("perplexity");
  ppl.Int("ctx", &t->perplexity.ctx, 4, 1 << 20);
  ppl.Int("chunks", &t->perplexity.chunks, -1, INT32_MAX);
  ppl.Finish();
  if (t->kind != TaskKind::kGenerate && top.Has("generation")) {
    errors->Add(top.KeyNode("generation"), "generation", "only for kind generate");
  }
  if (t->kind != TaskKind::kPerplexity && top.Has("perplexity")) {
    errors->Add(top.KeyNode("perplexity"), "perplexity", "only for kind perplexity");
  }
  if (t->kind == TaskKind::kPerplexity && top.Has("prompt")) {
    errors->Add(top.KeyNode("prompt"), "prompt", "not used by kind perplexity");
  }
}

void ReadTask(const YAML::Node& root, Errors* errors, Task* t, const std::string& base_dir) {
  Section top(root, "", errors);
  top.String("name", &t->name);
  top.String("description", &t->description);
  top.Enum<TaskKind>("kind", Choices<TaskKind>(3, TaskKindName), &t->kind);
  if (!top.Has("name")) errors->Add(nullptr, "name", "missing");
  if (!top.Has("kind")) {
    errors->Add(nullptr, "kind", "missing (generate, multiple_choice or perplexity)");
  }
  ReadData(top, errors, t);
  ReadPrompt(top, errors, t);
  ReadMetrics(top, errors, t);
  ReadLimits(top, errors, t);
  top.Finish();
  t->data.path = train::ResolvePath(t->data.path, base_dir);
  t->prompt.few_shot.pool = train::ResolvePath(t->prompt.few_shot.pool, base_dir);
}

}  // namespace

const char* TaskKindName(TaskKind k) {
  return std::array{"generate", "multiple_choice", "perplexity"}[static_cast<size_t>(k)];
}
const char* DataFormatName(DataFormat f) {
  return std::array{"fields", "chat", "text"}[static_cast<size_t>(f)];
}
const char* PromptStrategyName(PromptStrategy s) {
  return std::array{"zero_shot", "few_shot", "chain_of_thought"}[static_cast<size_t>(s)];
}
const char* MetricKindName(MetricKind m) {
  return std::array{"exact_match", "token_f1", "rouge_l",  "chrf",
                    "bleu",        "field_f1", "pass_at_1"}[static_cast<size_t>(m)];
}

absl::StatusOr<Task> ParseTask(std::string_view yaml, std::string_view name_view,
                               std::string_view base_dir) {
  const std::string name(name_view);
  Task t;
  t.source = name;
  ANVIL_RETURN_IF_ERROR(train::ParseStrictYaml(
      yaml, name, "task file", kMaxTaskBytes, [&](const YAML::Node& root, train::Errors* errors) {
        ReadTask(root, errors, &t, std::string(base_dir));
      }));
  return t;
}

absl::StatusOr<Task> LoadTask(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such task file"));
  }
  ANVIL_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  const std::string base = std::filesystem::absolute(path, ec).parent_path().string();
  return ParseTask(text, path, base);
}

}  // namespace anvil::eval
