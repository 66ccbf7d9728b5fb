// What the data pipeline hands the trainer: token sequences with per-position targets.
// targets[i] is the token the model must predict from position i (tokens[i + 1] for a trained
// token), or -1 where the loss is masked (prompt, system text, padding, the last position).
// The forward pass reads tokens; CrossEntropy reads targets (negative = ignored).
#ifndef ANVIL_TRAIN_EXAMPLE_H_
#define ANVIL_TRAIN_EXAMPLE_H_

#include <cstdint>
#include <vector>

namespace anvil::train {

struct SequenceExample {
  std::vector<int32_t> tokens;   // [T]
  std::vector<int32_t> targets;  // [T]; -1 = no loss at this position
  int64_t source_line = 0;       // 1-based line of the JSONL record it came from (0: packed/none)
};

// A DPO pair: both sequences share the prompt; targets cover the completion only.
struct PreferenceExample {
  SequenceExample chosen;
  SequenceExample rejected;
  int64_t source_line = 0;
};

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_EXAMPLE_H_
