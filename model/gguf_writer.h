// Writes GGUF v3 files that llama.cpp loads: metadata in insertion order, tensor infos, data
// written in info order, each tensor padded to the alignment (the last one too).
#ifndef ANVIL_MODEL_GGUF_WRITER_H_
#define ANVIL_MODEL_GGUF_WRITER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/gguf.h"

namespace anvil::gguf {

class GgufWriter {
 public:
  // Sets (or replaces, keeping its position) a metadata key. `general.alignment` must be a
  // UINT32 power of two; it changes the layout.
  void Set(std::string key, Value value);
  // Adds a tensor. `shape` is ne (shape[0] contiguous), `bytes` its exact data.
  // InvalidArgument on a duplicate or over-long name (>63 bytes), 0 or >4 dims, a shape not
  // divisible by the block size, or a byte count that does not match the shape.
  absl::Status AddTensor(std::string name, std::vector<int64_t> shape, uint32_t ggml_type,
                         std::string bytes);
  // The whole file in memory.
  absl::StatusOr<std::string> Serialize() const;
  // Writes to `path` atomically (temporary file, fsync, rename).
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct PendingTensor {
    std::string name;
    std::vector<int64_t> shape;
    uint32_t ggml_type;
    std::string bytes;
  };
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<PendingTensor> tensors_;
};

}  // namespace anvil::gguf

#endif  // ANVIL_MODEL_GGUF_WRITER_H_
