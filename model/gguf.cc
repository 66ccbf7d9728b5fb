// GGUF value model (constructors, DebugString), the ggml tensor-type table, file mapping
// (Open/FromBuffer) and the typed metadata getters. The byte-level parsing of the header,
// metadata and tensor infos lives in gguf_parser.cc.
#include "model/gguf.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "model/file_io.h"
#include "model/gguf_parser.h"

namespace anvil::gguf {

const char* ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kUint8: return "UINT8";
    case ValueType::kInt8: return "INT8";
    case ValueType::kUint16: return "UINT16";
    case ValueType::kInt16: return "INT16";
    case ValueType::kUint32: return "UINT32";
    case ValueType::kInt32: return "INT32";
    case ValueType::kFloat32: return "FLOAT32";
    case ValueType::kBool: return "BOOL";
    case ValueType::kString: return "STRING";
    case ValueType::kArray: return "ARRAY";
    case ValueType::kUint64: return "UINT64";
    case ValueType::kInt64: return "INT64";
    case ValueType::kFloat64: return "FLOAT64";
  }
  return "UNKNOWN";
}

namespace {

Value Scalar(ValueType t, decltype(Value::data) d) {
  Value v;
  v.type = t;
  v.data = std::move(d);
  return v;
}

// Our abseil's string_view is not std::string_view.
absl::string_view AbslView(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Strings in messages: escaped and cut, since keys and values come from untrusted files.
std::string QuoteCut(std::string_view s, size_t max_chars) {
  if (s.size() <= max_chars) return absl::StrCat("\"", absl::Utf8SafeCEscape(AbslView(s)), "\"");
  return absl::StrCat("\"", absl::Utf8SafeCEscape(AbslView(s.substr(0, max_chars))), "...\"");
}

template <typename T>
std::string ItemString(const T& x, size_t max_chars) {
  if constexpr (std::is_same_v<T, std::string>) {
    return QuoteCut(x, max_chars);
  } else if constexpr (std::is_same_v<T, bool>) {
    return x ? "true" : "false";
  } else {
    return absl::StrCat(x);
  }
}

}  // namespace

Value Value::Uint8(uint8_t v) { return Scalar(ValueType::kUint8, uint64_t{v}); }
Value Value::Int8(int8_t v) { return Scalar(ValueType::kInt8, int64_t{v}); }
Value Value::Uint16(uint16_t v) { return Scalar(ValueType::kUint16, uint64_t{v}); }
Value Value::Int16(int16_t v) { return Scalar(ValueType::kInt16, int64_t{v}); }
Value Value::Uint32(uint32_t v) { return Scalar(ValueType::kUint32, uint64_t{v}); }
Value Value::Int32(int32_t v) { return Scalar(ValueType::kInt32, int64_t{v}); }
Value Value::Uint64(uint64_t v) { return Scalar(ValueType::kUint64, v); }
Value Value::Int64(int64_t v) { return Scalar(ValueType::kInt64, v); }
Value Value::Float32(float v) { return Scalar(ValueType::kFloat32, static_cast<double>(v)); }
Value Value::Float64(double v) { return Scalar(ValueType::kFloat64, v); }
Value Value::Bool(bool v) { return Scalar(ValueType::kBool, v); }
Value Value::String(std::string v) { return Scalar(ValueType::kString, std::move(v)); }

Value Value::StringArray(std::vector<std::string> v) {
  return Array(ValueType::kString, std::move(v));
}
Value Value::Int32Array(std::vector<int32_t> v) {
  return Array(ValueType::kInt32, std::vector<int64_t>(v.begin(), v.end()));
}
Value Value::Float32Array(std::vector<float> v) {
  return Array(ValueType::kFloat32, std::vector<double>(v.begin(), v.end()));
}
Value Value::Array(ValueType elem_type, decltype(data) elems) {
  Value v;
  v.type = ValueType::kArray;
  v.elem_type = elem_type;
  v.data = std::move(elems);
  return v;
}

// True for the vector alternatives of Value::data (arrays), false for the scalars.
template <typename T>
constexpr bool kIsArrayData =
    std::is_same_v<T, std::vector<uint64_t>> || std::is_same_v<T, std::vector<int64_t>> ||
    std::is_same_v<T, std::vector<double>> || std::is_same_v<T, std::vector<bool>> ||
    std::is_same_v<T, std::vector<std::string>>;

size_t Value::size() const {
  if (!is_array()) return 1;
  return std::visit(
      [](const auto& d) -> size_t {
        using T = std::decay_t<decltype(d)>;
        if constexpr (kIsArrayData<T>) {
          return d.size();
        } else {
          return 0;  // an array Value holding a scalar: malformed, treat as empty
        }
      },
      data);
}

std::string Value::DebugString(size_t max_items, size_t max_chars) const {
  return std::visit(
      [&](const auto& d) -> std::string {
        using T = std::decay_t<decltype(d)>;
        if constexpr (kIsArrayData<T>) {
          std::string out = "[";
          const size_t shown = std::min(max_items, d.size());
          for (size_t i = 0; i < shown; ++i) {
            if (i > 0) absl::StrAppend(&out, ", ");
            absl::StrAppend(&out, ItemString<typename T::value_type>(d[i], max_chars));
          }
          if (shown < d.size()) {
            absl::StrAppend(&out, shown > 0 ? ", " : "", "... (", d.size(), " items)");
          }
          return out + "]";
        } else {
          return ItemString<T>(d, max_chars);
        }
      },
      data);
}

// ---------------------------------------------------------------------------------------------
// ggml tensor types. Ids 4, 5, 31-33 and 36-38 were removed from ggml and never appear in files;
// 40+ are newer than the files we target and are treated as unknown.
namespace {
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},          {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},       {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},       {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},    {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},    {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98},  {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},   {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},          {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},         {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},        {34, "TQ1_0", 256, 54},
    {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
};
}  // namespace

const GgmlTypeInfo* FindGgmlType(uint32_t id) {
  for (const GgmlTypeInfo& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

std::optional<DType> ToDType(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0: return DType::kF32;
    case 1: return DType::kF16;
    case 2: return DType::kQ4_0;
    case 3: return DType::kQ4_1;
    case 8: return DType::kQ8_0;
    case 30: return DType::kBF16;
    default: return std::nullopt;
  }
}

uint32_t FromDType(DType t) {
  switch (t) {
    case DType::kF32: return 0;
    case DType::kF16: return 1;
    case DType::kQ4_0: return 2;
    case DType::kQ4_1: return 3;
    case DType::kQ8_0: return 8;
    case DType::kBF16: return 30;
  }
  return 0;
}

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // the parser has checked that this cannot overflow
  return n;
}

// ---------------------------------------------------------------------------------------------
// Construction.

GgufFile::~GgufFile() {
  if (mapping_ != nullptr) munmap(mapping_, size_);
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path,
                                                         const ReadLimits& limits) {
  ANVIL_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  std::unique_ptr<GgufFile> file(new GgufFile);
  file->name_ = path;
  file->size_ = mapped.size();
  file->base_ = mapped.data();
  file->mapping_ = mapped.Release();  // unmapped by the destructor, also on parse errors below
  ANVIL_RETURN_IF_ERROR(GgufParser::Parse(*file, limits));
  return file;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBuffer(std::string name,
                                                               absl::Span<const uint8_t> bytes,
                                                               const ReadLimits& limits) {
  std::unique_ptr<GgufFile> file(new GgufFile);
  file->name_ = std::move(name);
  file->base_ = bytes.data();
  file->size_ = bytes.size();
  ANVIL_RETURN_IF_ERROR(GgufParser::Parse(*file, limits));
  return file;
}

// ---------------------------------------------------------------------------------------------
// Lookups and typed getters.

const Value* GgufFile::Find(std::string_view key) const {
  auto it = kv_index_.find(AbslView(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(AbslView(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

bool IsIntegerType(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kUint16:
    case ValueType::kInt16:
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kUint64:
    case ValueType::kInt64:
      return true;
    default:
      return false;
  }
}

std::string TypeString(const Value& v) {
  if (!v.is_array()) return ValueTypeName(v.type);
  return absl::StrCat("ARRAY[", ValueTypeName(v.elem_type), "]");
}

absl::Status WrongType(const std::string& file, std::string_view key, const Value& v,
                       const char* expected) {
  return absl::InvalidArgumentError(absl::StrCat(file, ": metadata key '", AbslView(key),
                                                 "' has type ", TypeString(v), ", expected ",
                                                 expected));
}

}  // namespace

// Looks `key` up or fails with NotFound naming the file and key.
#define ANVIL_GGUF_FIND_OR_RETURN(v, key)                                                 \
  const Value* v = Find(key);                                                             \
  if (v == nullptr) {                                                                     \
    return absl::NotFoundError(                                                           \
        absl::StrCat(name_, ": metadata key '", AbslView(key), "' not found"));           \
  }

absl::StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  ANVIL_GGUF_FIND_OR_RETURN(v, key);
  if (!IsIntegerType(v->type)) return WrongType(name_, key, *v, "an integer");
  if (const auto* s = std::get_if<int64_t>(&v->data)) return *s;
  const uint64_t u = std::get<uint64_t>(v->data);
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError(
        absl::StrCat(name_, ": metadata key '", AbslView(key), "' value ", u,
                     " does not fit in int64"));
  }
  return static_cast<int64_t>(u);
}

absl::StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  ANVIL_GGUF_FIND_OR_RETURN(v, key);
  if (v->type != ValueType::kFloat32 && v->type != ValueType::kFloat64) {
    return WrongType(name_, key, *v, "FLOAT32 or FLOAT64");
  }
  return std::get<double>(v->data);
}

absl::StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  ANVIL_GGUF_FIND_OR_RETURN(v, key);
  if (v->type != ValueType::kBool) return WrongType(name_, key, *v, "BOOL");
  return std::get<bool>(v->data);
}

absl::StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  ANVIL_GGUF_FIND_OR_RETURN(v, key);
  if (v->type != ValueType::kString) return WrongType(name_, key, *v, "STRING");
  return std::get<std::string>(v->data);
}

absl::StatusOr<const std::vector<std::string>*> GgufFile::GetStringArray(
    std::string_view key) const {
  ANVIL_GGUF_FIND_OR_RETURN(v, key);
  const auto* a = std::get_if<std::vector<std::string>>(&v->data);
  if (!v->is_array() || a == nullptr) return WrongType(name_, key, *v, "ARRAY[STRING]");
  return a;
}

absl::StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  ANVIL_GGUF_FIND_OR_RETURN(v, key);
  if (!v->is_array() || !IsIntegerType(v->elem_type)) {
    return WrongType(name_, key, *v, "an array of integers");
  }
  if (const auto* s = std::get_if<std::vector<int64_t>>(&v->data)) return *s;
  const auto* u = std::get_if<std::vector<uint64_t>>(&v->data);
  if (u == nullptr) return WrongType(name_, key, *v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(u->size());
  for (size_t i = 0; i < u->size(); ++i) {
    if ((*u)[i] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(absl::StrCat(name_, ": metadata key '", AbslView(key),
                                                     "' element ", i, " value ", (*u)[i],
                                                     " does not fit in int64"));
    }
    out.push_back(static_cast<int64_t>((*u)[i]));
  }
  return out;
}

absl::StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  ANVIL_GGUF_FIND_OR_RETURN(v, key);
  const auto* a = std::get_if<std::vector<double>>(&v->data);
  if (!v->is_array() || a == nullptr) {
    return WrongType(name_, key, *v, "ARRAY[FLOAT32] or ARRAY[FLOAT64]");
  }
  return *a;
}

#undef ANVIL_GGUF_FIND_OR_RETURN

}  // namespace anvil::gguf
