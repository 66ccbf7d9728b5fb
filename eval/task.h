// Evaluation tasks: the YAML file `anvil eval MODEL TASK.yaml` reads (what data, which kind of
// evaluation, which prompt strategy, which metrics, generation limits) and the JSONL records it
// names. Parsing is strict, like recipes: a bad task file is an InvalidArgument naming the file,
// line and field ("t.yaml:4:7: prompt.strategy: expected one of ..."); a bad record names the
// file:line and what is wrong. Rendering prompts is prompt.h's job; running them, harness.h's.
#ifndef ANVIL_EVAL_TASK_H_
#define ANVIL_EVAL_TASK_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/normalize.h"
#include "eval/pass_at_k.h"
#include "model/chat_template.h"

namespace anvil::eval {

enum class TaskKind { kGenerate, kMultipleChoice, kPerplexity };  // generate, multiple_choice,
                                                                   // perplexity
enum class DataFormat { kFields, kChat, kText };                  // fields, chat, text
enum class PromptStrategy { kZeroShot, kFewShot, kChainOfThought };  // zero_shot, few_shot,
                                                                      // chain_of_thought
enum class MetricKind { kExactMatch, kTokenF1, kRougeL, kChrf, kBleu, kFieldF1, kPassAt1 };

const char* TaskKindName(TaskKind k);
const char* DataFormatName(DataFormat f);
const char* PromptStrategyName(PromptStrategy s);
const char* MetricKindName(MetricKind m);  // exact_match, token_f1, rouge_l, chrf, bleu, field_f1,
                                           // pass_at_1

struct DataSpec {
  std::string path;          // resolved against the task file's directory
  std::string path_as_written;  // as in the task file (recorded in results: no machine paths)
  DataFormat format = DataFormat::kFields;
  // kFields: the field holding the reference answer; for multiple_choice the correct choice,
  // as an index into `choices` or as the choice's text.
  std::string reference = "answer";
  std::string choices = "choices";  // multiple_choice: the field holding the list of choices
  std::string id;                   // optional field naming each record (else "line N")
};

struct FewShotSpec {
  int64_t k = 3;
  std::string pool;             // JSONL in the data's format; resolved like data.path
  std::string pool_as_written;  // "" = the data file itself (the record itself is never chosen)
  uint64_t seed = 1234;
  bool multi_turn = true;       // examples as user/assistant turns; false: inlined in one turn
  std::string separator = "\n\n";  // between inlined examples
};

struct ChainOfThoughtSpec {
  std::string instruction =
      "Think step by step. Then write the final answer on its own line, starting with "
      "\"Answer:\".";
  std::string marker = "Answer:";  // the answer is the text after the last marker
  std::string regex;                // or: group 1 (else the whole match) of the last match
  int64_t max_tokens = 256;
};

struct PromptSpec {
  std::string name = "default";
  std::string system;               // "" = the record's own, else the template's default
  std::string user = "{input}";     // {field} from the record; {{ and }} are literal braces
  PromptStrategy strategy = PromptStrategy::kZeroShot;
  FewShotSpec few_shot;
  ChainOfThoughtSpec chain_of_thought;
};

struct MetricSpec {
  MetricKind kind = MetricKind::kExactMatch;
  Normalization normalize = Normalization::kWhitespace;  // exact_match only
  std::string name;  // in results; default: the kind's name (+ "_<normalizer>" if not whitespace)
  CodeCheckSpec check;  // pass_at_1 only: the sandboxed check command (pass_at_k.h)
};

struct GenerationSpec {
  int64_t max_tokens = 128;
  double temperature = 0.0;  // 0: greedy
  int64_t top_k = 40;
  double top_p = 0.95;
  uint64_t seed = 0;         // example i samples with seed + i
};

struct PerplexitySpec {
  int64_t ctx = 512;
  int64_t chunks = -1;  // -1: all whole chunks
};

struct Task {
  std::string source;  // the task file, as given
  std::string name;
  std::string description;
  TaskKind kind = TaskKind::kGenerate;
  DataSpec data;
  PromptSpec prompt;
  std::vector<MetricSpec> metrics;  // generate only
  GenerationSpec generation;
  PerplexitySpec perplexity;
};

// One record of a task's data (or few-shot pool).
struct Example {
  std::string id;
  int64_t line = 0;                           // 1-based line in its file
  std::map<std::string, std::string> fields;  // string (or number) fields, for {variables}
  std::vector<ChatMessage> chat;  // kChat: the messages before the answer (last one is the user's)
  std::string reference;          // the answer; multiple_choice: the correct choice's text
  std::vector<std::string> choices;  // multiple_choice
  int64_t answer = -1;               // multiple_choice: index of the correct choice
};

absl::StatusOr<Task> ParseTask(std::string_view yaml, std::string_view name,
                               std::string_view base_dir);
// NotFound when the file does not exist; paths inside resolve against its directory.
absl::StatusOr<Task> LoadTask(const std::string& path);

// Reads the records of `spec` (format fields or chat) for a task of `kind`. Every {variable} of
// `user_template` must be a field of every record. InvalidArgument listing the bad lines
// ("data/mc/test.jsonl:3: answer: 4 is out of range for 3 choices").
absl::StatusOr<std::vector<Example>> ParseExamples(std::string_view text, std::string_view name,
                                                   const DataSpec& spec, TaskKind kind,
                                                   std::string_view user_template);
absl::StatusOr<std::vector<Example>> LoadExamples(const std::string& path, const DataSpec& spec,
                                                  TaskKind kind, std::string_view user_template);

// The names of the {variables} of a template; InvalidArgument for an unbalanced brace.
absl::StatusOr<std::vector<std::string>> TemplateVariables(std::string_view tmpl);

// Reads a whole file (NotFound / InvalidArgument naming it).
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_TASK_H_
