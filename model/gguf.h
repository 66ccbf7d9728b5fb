// GGUF (v2, v3) files: the metadata value model, the defensive reader (mmap or caller buffer)
// and the ggml tensor-type table. Writing lives in gguf_writer.h. Nothing here knows about
// llama models; model/llama_*.cc interpret the keys.
#ifndef ANVIL_MODEL_GGUF_H_
#define ANVIL_MODEL_GGUF_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/dtype.h"

namespace anvil::gguf {

// Metadata value type ids as stored in the file.
enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* ValueTypeName(ValueType t);

// One metadata value. Scalars are held in the widest type of their kind (the exact stored
// type is `type`); arrays hold `elem_type` and the matching vector (never nested arrays).
struct Value {
  ValueType type = ValueType::kUint8;
  ValueType elem_type = ValueType::kUint8;  // arrays only
  std::variant<uint64_t, int64_t, double, bool, std::string,  // scalars
               std::vector<uint64_t>, std::vector<int64_t>, std::vector<double>,
               std::vector<bool>, std::vector<std::string>>  // arrays by element kind
      data;

  static Value Uint8(uint8_t v);
  static Value Int8(int8_t v);
  static Value Uint16(uint16_t v);
  static Value Int16(int16_t v);
  static Value Uint32(uint32_t v);
  static Value Int32(int32_t v);
  static Value Uint64(uint64_t v);
  static Value Int64(int64_t v);
  static Value Float32(float v);
  static Value Float64(double v);
  static Value Bool(bool v);
  static Value String(std::string v);
  static Value StringArray(std::vector<std::string> v);
  static Value Int32Array(std::vector<int32_t> v);
  static Value Float32Array(std::vector<float> v);
  // Array of any scalar type; `elem_type` must not be kArray.
  static Value Array(ValueType elem_type, decltype(data) elems);

  bool is_array() const { return type == ValueType::kArray; }
  // Number of elements of an array, 1 for a scalar.
  size_t size() const;
  // Short human-readable form: scalars in full (strings quoted, cut at max_chars), arrays as
  // "[a, b, c, ... (N items)]" with at most max_items items.
  std::string DebugString(size_t max_items = 8, size_t max_chars = 200) const;
  bool operator==(const Value& o) const = default;
};

// ggml tensor type ids (ggml.h). Only the layout matters to the reader; which ones the kernels
// compute with is ToDType's business.
struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int64_t block_elems;  // elements per block
  int64_t block_bytes;  // bytes per block
};
// Table entry for a ggml type id, or nullptr if the id is unknown or was removed.
const GgmlTypeInfo* FindGgmlType(uint32_t id);
// The kernel dtype for a ggml type id, or nullopt when the kernels cannot compute with it.
std::optional<DType> ToDType(uint32_t ggml_type);
uint32_t FromDType(DType t);

struct TensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ne: shape[0] is the contiguous dimension; 1..4 dims
  uint32_t ggml_type = 0;
  uint64_t offset = 0;         // relative to the data section
  uint64_t size_bytes = 0;     // exact (unpadded) byte size
  const uint8_t* data = nullptr;  // points into the mapped file / buffer
  int64_t num_elements() const;
};

// Caps on untrusted header fields (allocation is never sized by an unchecked field).
struct ReadLimits {
  uint64_t max_string_bytes = 1ull << 30;     // 1 GiB, as ggml
  uint64_t max_array_elems = 1ull << 30;
  uint64_t max_tensors = 1ull << 20;
  uint64_t max_kv = 1ull << 20;
  int64_t max_dim = int64_t{1} << 40;
};

class GgufFile {
 public:
  // Maps `path` read-only and parses it. NotFound if it does not exist; InvalidArgument with
  // "<path>: <field> at byte <offset>: <problem>" for every malformed input.
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path,
                                                        const ReadLimits& limits = {});
  // Parses a caller-owned buffer, which must outlive the result. `name` is used in messages.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBuffer(std::string name,
                                                              absl::Span<const uint8_t> bytes,
                                                              const ReadLimits& limits = {});
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& name() const { return name_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // absolute start of the data section
  uint64_t file_size() const { return size_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  const Value* Find(std::string_view key) const;
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Typed getters: NotFound when the key is missing, InvalidArgument when its type does not fit
  // (messages name the file and key). GetInt accepts any integer type that fits int64;
  // GetFloat accepts FLOAT32/FLOAT64.
  absl::StatusOr<int64_t> GetInt(std::string_view key) const;
  absl::StatusOr<double> GetFloat(std::string_view key) const;
  absl::StatusOr<bool> GetBool(std::string_view key) const;
  absl::StatusOr<std::string> GetString(std::string_view key) const;
  absl::StatusOr<const std::vector<std::string>*> GetStringArray(std::string_view key) const;
  // Integer arrays of any integer element type, widened.
  absl::StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  absl::StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* FindTensor(std::string_view name) const;

 private:
  GgufFile() = default;
  friend class GgufParser;

  std::string name_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  uint64_t size_ = 0;
  const uint8_t* base_ = nullptr;
  void* mapping_ = nullptr;  // non-null when we own an mmap of size_ bytes
  std::vector<std::pair<std::string, Value>> kv_;
  absl::flat_hash_map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  absl::flat_hash_map<std::string, size_t> tensor_index_;
};

}  // namespace anvil::gguf

#endif  // ANVIL_MODEL_GGUF_H_
