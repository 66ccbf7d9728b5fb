// Hugging Face safetensors files: a defensive reader (mmap or caller buffer) and a deterministic
// writer, interoperable with Python's `safetensors` package both ways. Layout: u64 little-endian
// header length N, N bytes of JSON ({"__metadata__": {str: str}, name: {"dtype", "shape",
// "data_offsets": [begin, end)}}), then the data section the offsets are relative to. What the
// tensors mean (checkpoints, PEFT adapters) is train/'s business.
#ifndef ANVIL_MODEL_SAFETENSORS_H_
#define ANVIL_MODEL_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace anvil::safetensors {

// Element types as the format names them ("F32", "BF16", ...).
enum class ElementType : uint8_t {
  kBool,
  kU8,
  kI8,
  kU16,
  kI16,
  kU32,
  kI32,
  kU64,
  kI64,
  kF16,
  kBF16,
  kF32,
  kF64,
  kF8E4M3,
  kF8E5M2,
};
const char* ElementTypeName(ElementType t);
std::optional<ElementType> ParseElementType(std::string_view name);
int64_t ElementSize(ElementType t);  // bytes per element

// One tensor of an open file. The bytes point into the mapping/buffer (no alignment promised:
// read with memcpy).
struct TensorView {
  std::string name;
  ElementType dtype = ElementType::kF32;
  std::vector<int64_t> shape;  // row-major, shape[0] outermost (PyTorch order); [] = scalar
  uint64_t begin = 0;          // [begin, end) relative to the data section
  uint64_t end = 0;
  absl::Span<const uint8_t> bytes;
  int64_t num_elements() const;
};

struct ReadLimits {
  uint64_t max_header_bytes = uint64_t{100} << 20;  // 100 MiB (the Python reader's cap is 100 MB)
  size_t max_dims = 16;
  uint64_t max_tensors = uint64_t{1} << 20;   // counted while parsing, before allocation
  uint64_t max_metadata = uint64_t{1} << 20;  // __metadata__ entries
};

class SafetensorsFile {
 public:
  // Maps `path` read-only and parses it: NotFound when it does not exist, InvalidArgument
  // "<path>: <problem>" (naming the tensor and its offsets) for every malformed input.
  // Accepted files are exactly the ones Python's reader accepts: tensors must tile the data
  // section contiguously (no gaps, overlaps or trailing bytes).
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path,
                                                               const ReadLimits& limits = {});
  // Parses a caller-owned buffer that must outlive the result; `name` is used in messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(
      std::string name, absl::Span<const uint8_t> bytes, const ReadLimits& limits = {});
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& name() const { return name_; }
  uint64_t file_size() const { return size_; }
  // The JSON header as stored (padding included) and the data section after it.
  std::string_view header_json() const;
  absl::Span<const uint8_t> data_section() const;

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string* FindMetadata(std::string_view key) const;

  // Tensors in header order (the order of their keys in the JSON).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  std::vector<std::string> names() const;
  const TensorView* Find(std::string_view name) const;
  // NotFound naming the file and tensor when absent.
  absl::StatusOr<const TensorView*> Get(std::string_view name) const;
  // The tensor converted to float: F32, F16, BF16 (InvalidArgument for other types).
  absl::StatusOr<std::vector<float>> ReadF32(std::string_view name) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse(const ReadLimits& limits);

  std::string name_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  void* mapping_ = nullptr;  // non-null when we own an mmap of size_ bytes
  uint64_t header_len_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<TensorView> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
};

// Builds a file: `__metadata__` first (keys in insertion order), then the tensors in insertion
// order, their data packed contiguously in that order (the Python reader requires no gaps). The
// JSON header is padded with spaces so that the data section starts at a multiple of 8.
class SafetensorsWriter {
 public:
  // Sets (or replaces, keeping its position) a `__metadata__` entry. InvalidArgument when the
  // key or value is not UTF-8 (JSON strings must be).
  absl::Status SetMetadata(std::string key, std::string value);
  // Adds a tensor whose bytes the writer copies. InvalidArgument for a duplicate or empty name,
  // the name "__metadata__", a negative dimension, or a byte count that does not match.
  absl::Status Add(std::string name, ElementType dtype, std::vector<int64_t> shape,
                   std::string bytes);
  // Adds a tensor by reference: `bytes` must stay alive and unchanged until the last
  // Serialize/WriteFile call (how checkpoints avoid copying gigabytes).
  absl::Status AddView(std::string name, ElementType dtype, std::vector<int64_t> shape,
                       absl::Span<const uint8_t> bytes);
  absl::Status AddF32View(std::string name, std::vector<int64_t> shape,
                          absl::Span<const float> data);

  // u64 length + padded JSON: everything before the data section.
  std::string Header() const;
  // The data section's size and its pieces in file order.
  uint64_t data_size() const { return data_size_; }
  std::vector<absl::Span<const uint8_t>> DataPieces() const;
  // The whole file in memory.
  std::string Serialize() const;
  // Streams the file to `path` atomically (anvil::WriteFileAtomically, model/file_io.h).
  absl::Status WriteFile(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    ElementType dtype;
    std::vector<int64_t> shape;
    std::string owned;                // Add()
    absl::Span<const uint8_t> bytes;  // points at `owned` or at the caller's data
  };
  absl::Status Check(const std::string& name, ElementType dtype, const std::vector<int64_t>& shape,
                     size_t n_bytes) const;

  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<std::unique_ptr<Entry>> entries_;  // stable addresses for `bytes` into `owned`
  absl::flat_hash_map<std::string, size_t> index_;
  uint64_t data_size_ = 0;
};

}  // namespace anvil::safetensors

#endif  // ANVIL_MODEL_SAFETENSORS_H_
