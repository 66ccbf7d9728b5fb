// Eval jobs split a task's records across workers (HarnessOptions::shard/num_shards). Each
// worker's part travels to rank 0 as a shard document (full-precision scores, unlike the
// result file's "%.6f"), and MergeShards rebuilds the result an unsharded run gives: examples in
// record order, metrics and bootstrap CIs over all of them. So a job on N workers writes the same
// result file, byte for byte, as `anvil eval` in one process.
#ifndef ANVIL_EVAL_SHARDS_H_
#define ANVIL_EVAL_SHARDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "eval/bootstrap.h"
#include "eval/harness.h"

namespace anvil::eval {

// One shard as JSON ("anvil-eval-shard/1"): the run's header fields, its shard index and count,
// its examples (doubles written so they read back bit-identical) and, on shard 0 of a
// perplexity task, the perplexity summary.
std::string SerializeShard(const TaskResult& result, int64_t shard, int64_t num_shards);

struct Shard {
  int64_t shard = 0, num_shards = 1;
  TaskResult result;
};
// InvalidArgument naming `source` and the field for anything malformed.
absl::StatusOr<Shard> ParseShard(const std::string& source, const std::string& text);

// Shards 0..N-1 (any order, each exactly once, all of one run) -> the whole result.
// InvalidArgument when shards are missing, repeated, or disagree on the run's header.
absl::StatusOr<TaskResult> MergeShards(std::vector<Shard> shards,
                                       const BootstrapOptions& bootstrap);

}  // namespace anvil::eval

#endif  // ANVIL_EVAL_SHARDS_H_
