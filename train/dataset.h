// Training data as JSONL records: chat `messages`, `prompt`/`completion` (strings or TRL's
// conversational lists) and preference `prompt`/`chosen`/`rejected`. Parsing is defensive (capped
// line length, nesting and record count; no exception escapes) and every malformed line is
// reported as "<file>:<line>: <field>: <problem>". Turning records into tokens is render.h's job.
#ifndef ANVIL_TRAIN_DATASET_H_
#define ANVIL_TRAIN_DATASET_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/chat_template.h"

namespace anvil::train {

// An SFT record. `messages` records train every assistant turn (completion_start = 0);
// `prompt`/`completion` records become prompt messages + completion messages (a string prompt is
// one user turn, a string completion one assistant turn), and only assistant turns at index >=
// completion_start are trained, as TRL's completion-only loss.
struct ChatRecord {
  std::vector<ChatMessage> messages;
  size_t completion_start = 0;
  int64_t line = 0;  // 1-based line in the source file
};

// A preference pair: both answers continue the same prompt. chosen/rejected hold assistant turns.
struct PreferenceRecord {
  std::vector<ChatMessage> prompt;
  std::vector<ChatMessage> chosen;
  std::vector<ChatMessage> rejected;
  int64_t line = 0;
};

enum class DatasetKind { kSft, kPreference };
const char* DatasetKindName(DatasetKind kind);  // "SFT", "preference"

// One file's records; a file holds one kind only (only the vector of its kind is filled).
struct Dataset {
  std::string name;  // the path (or name) used in messages
  DatasetKind kind = DatasetKind::kSft;
  std::vector<ChatRecord> chats;
  std::vector<PreferenceRecord> preferences;
  size_t size() const { return kind == DatasetKind::kSft ? chats.size() : preferences.size(); }
};

struct ReadOptions {
  size_t max_line_bytes = size_t{16} << 20;  // longer lines are reported, never parsed
  int max_depth = 64;                        // JSON nesting (records need 3)
  int64_t max_records = int64_t{10} << 20;
  int max_listed_errors = 20;  // one message lists this many bad lines, then "and N more"
};

// Reads a JSONL file. NotFound when it does not exist; InvalidArgument listing every malformed
// line ("data/train.jsonl:17: messages[2].role: expected \"system\", \"user\" or
// \"assistant\", got \"bot\""), for a file that mixes SFT and preference records (naming the
// first offending line) and for a file without records. Blank lines are skipped.
absl::StatusOr<Dataset> ReadJsonlFile(const std::string& path, const ReadOptions& options = {});
// The same for text already in memory; `name` stands for the file in messages.
absl::StatusOr<Dataset> ParseJsonl(std::string_view text, std::string_view name,
                                   const ReadOptions& options = {});

// Collects "<name>:<line>: <message>" errors and turns them into one InvalidArgument that lists
// the first `max_listed` and counts the rest. Shared by the reader and the renderer.
class LineErrors {
 public:
  LineErrors(std::string name, int max_listed) : name_(std::move(name)), max_listed_(max_listed) {}
  void Add(int64_t line, absl::string_view message);
  int64_t count() const { return count_; }
  // OK when nothing was added; `what` names the kind of problem ("malformed lines").
  absl::Status ToStatus(absl::string_view what) const;

 private:
  std::string name_;
  int max_listed_;
  int64_t count_ = 0;
  std::vector<std::string> listed_;
};

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_DATASET_H_
