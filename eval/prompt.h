// Prompt strategies: turns a task record into the chat messages a model sees (zero-shot,
// few-shot with seeded example selection, as turns or inlined, chain-of-thought) and those into
// text through the model's chat template, the same Render call inference and training use.
// A prompt is versioned: its name and a content hash go into every result file. Scoring is not
// here (harness.h).
#ifndef ANVIL_EVAL_PROMPT_H_
#define ANVIL_EVAL_PROMPT_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/task.h"
#include "model/chat_template.h"

namespace anvil::eval {

// Replaces each {name} with fields[name]; {{ and }} are literal braces. InvalidArgument naming a
// missing field or a bad brace.
absl::StatusOr<std::string> FillTemplate(std::string_view tmpl,
                                         const std::map<std::string, std::string>& fields);

// The pool indices of the k few-shot examples for record `record_index`: a partial Fisher-Yates
// shuffle driven by std::mt19937_64 seeded with (seed, record_index), so the choice depends only
// on those (not on --limit or on other records). Indices in `exclude` are never chosen; fewer
// than k come back when the pool is too small.
std::vector<size_t> SelectFewShot(size_t pool_size, int64_t k, uint64_t seed,
                                  uint64_t record_index, const std::vector<size_t>& exclude);

// The answer inside a chain-of-thought output: the text after the last `marker`, or group 1 (else
// the whole match) of the last match of `regex`; trimmed. nullopt when nothing matches.
std::optional<std::string> ExtractAnswer(std::string_view output, const ChainOfThoughtSpec& spec);

class PromptBuilder {
 public:
  // `pool` holds the few-shot examples (it may be the task's data itself; a record is then never
  // its own example). It must outlive the builder.
  PromptBuilder(const PromptSpec& spec, PromptStrategy strategy, const std::vector<Example>* pool);

  // The messages for `ex`, the `index`-th record of the task (seeds the few-shot choice).
  absl::StatusOr<std::vector<ChatMessage>> Messages(const Example& ex, uint64_t index) const;
  // Messages(...) rendered by `tmpl` with the assistant's generation prompt appended.
  absl::StatusOr<std::string> Render(const ChatTemplate& tmpl, const Example& ex,
                                     uint64_t index) const;

  PromptStrategy strategy() const { return strategy_; }
  const std::string& name() const { return spec_.name; }
  // SHA-256 (hex) of everything that decides the prompt text: the strategy and its settings, the
  // system prompt, the user template and the few-shot pool's contents.
  const std::string& hash() const { return hash_; }

 private:
  PromptSpec spec_;
  PromptStrategy strategy_;
  const std::vector<Example>* pool_;
  std::string hash_;
};

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_PROMPT_H_
