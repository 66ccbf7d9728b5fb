// Training checkpoints: one safetensors file per step (parameters and optimizer moments as F32
// tensors, string metadata for RNG state, data position, recipe hash, ...), written atomically
// and checksummed so that a truncated or corrupted file is refused rather than resumed from.
// What goes into a checkpoint and how it is applied is the trainer's business.
#ifndef ANVIL_TRAIN_CHECKPOINT_H_
#define ANVIL_TRAIN_CHECKPOINT_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace anvil::train {

// File format (anvil-checkpoint-v1), a plain safetensors file that Python can read:
//   __metadata__: the caller's entries, plus
//     "anvil.format" = "anvil-checkpoint-v1", "anvil.step" = decimal step,
//     "anvil.sha256" = hex SHA-256 of: the header's meaning in a canonical form (for each tensor
//       in file order: name, dtype, shape, data_offsets; then every metadata entry except
//       anvil.sha256, sorted by key; each string as u64 little-endian length + bytes, each
//       integer as u64 little-endian) followed by the whole data section.
//   So every byte the reader uses is covered except the checksum itself and JSON whitespace.
//   tensors: F32, row-major, in the order given.
inline constexpr char kCheckpointFormat[] = "anvil-checkpoint-v1";
inline constexpr char kCheckpointFormatKey[] = "anvil.format";
inline constexpr char kCheckpointStepKey[] = "anvil.step";
inline constexpr char kCheckpointSha256Key[] = "anvil.sha256";
// The trainer stores parameter <name> as tensor kCheckpointParamPrefix + <name>.
inline constexpr char kCheckpointParamPrefix[] = "param/";

struct CheckpointTensor {
  std::string name;
  std::vector<int64_t> shape;  // row-major
  std::vector<float> data;     // product(shape) floats
};

struct Checkpoint {
  int64_t step = 0;
  std::vector<CheckpointTensor> tensors;        // parameters and optimizer moments
  std::map<std::string, std::string> metadata;  // caller's entries; keys "anvil.*" are reserved
  const CheckpointTensor* Find(std::string_view name) const;
};

// A tensor by reference, so the trainer can checkpoint its live buffers without copying them.
struct CheckpointTensorRef {
  std::string name;
  std::vector<int64_t> shape;
  absl::Span<const float> data;  // product(shape) floats; must outlive the write
};

// "<dir>/ckpt-00000120.safetensors" (at least 8 digits).
std::string CheckpointPath(const std::string& dir, int64_t step);

// Writes a checkpoint and returns the path written. `dir_or_path` ending in ".safetensors" is
// the file to write; anything else is a directory (created if missing) and the file is
// CheckpointPath(dir, step). The data is hashed in one pass over the caller's buffers and
// streamed to a temporary file in the same directory, fsynced, renamed into place, and the
// directory fsynced: a reader never sees a partial file under the final name.
// InvalidArgument for a negative step, a reserved or non-UTF-8 metadata key, a duplicate tensor
// name or a shape that does not match the data.
absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir_or_path, int64_t step,
                                            absl::Span<const CheckpointTensorRef> tensors,
                                            const std::map<std::string, std::string>& metadata);
absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir_or_path, const Checkpoint& ckpt);

// Reads and verifies a checkpoint (mapped, hashed, then copied once into the result).
// NotFound when it does not exist; DataLoss, "<file>: <problem> ...; refusing to resume from
// it", for a truncated, partially written, corrupted or foreign file.
absl::StatusOr<Checkpoint> ReadCheckpoint(const std::string& path);
// The same checks without copying the tensors; returns the step.
absl::StatusOr<int64_t> VerifyCheckpoint(const std::string& path);

struct LatestCheckpointResult {
  std::string path;
  int64_t step = 0;
  // Empty, or one line per newer checkpoint file that failed verification and was skipped.
  std::string warning;
};
// The newest checkpoint in `dir` (by the step in its file name) that verifies. NotFound when
// the directory does not exist or holds no complete checkpoint (the message then lists the
// files skipped).
absl::StatusOr<LatestCheckpointResult> LatestCheckpoint(const std::string& dir);

// Deletes all but the `keep_last` checkpoints with the highest steps in `dir` (keep_last >= 1),
// and leftover temporary files of interrupted writes ("ckpt-*.safetensors.tmp.*"). Call it
// after a successful WriteCheckpoint, never concurrently with one. Returns the paths removed.
absl::StatusOr<std::vector<std::string>> PruneCheckpoints(const std::string& dir, int keep_last);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_CHECKPOINT_H_
