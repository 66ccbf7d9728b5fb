// GgufWriter: validates metadata and tensors, lays out a GGUF v3 little-endian file (data in info
// order, every tensor padded to the alignment, the last one too) and writes it atomically.
#include "model/gguf_writer.h"

#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "model/file_io.h"

namespace anvil::gguf {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the GGUF writer copies host scalars as little-endian");

constexpr uint32_t kVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr size_t kMaxTensorName = 63;

template <typename T>
void Put(std::string* out, T x) {
  char b[sizeof(T)];
  std::memcpy(b, &x, sizeof(T));
  out->append(b, sizeof(T));
}

void PutString(std::string* out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out->append(s);
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

absl::Status KeyError(absl::string_view key, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("gguf writer: key '", key, "': ", problem));
}

// Range of the integer types (floats, bools and strings are not range-checked).
bool FitsUnsigned(ValueType t, uint64_t x) {
  switch (t) {
    case ValueType::kUint8: return x <= std::numeric_limits<uint8_t>::max();
    case ValueType::kUint16: return x <= std::numeric_limits<uint16_t>::max();
    case ValueType::kUint32: return x <= std::numeric_limits<uint32_t>::max();
    default: return true;
  }
}
bool FitsSigned(ValueType t, int64_t x) {
  switch (t) {
    case ValueType::kInt8: return x >= INT8_MIN && x <= INT8_MAX;
    case ValueType::kInt16: return x >= INT16_MIN && x <= INT16_MAX;
    case ValueType::kInt32: return x >= INT32_MIN && x <= INT32_MAX;
    default: return true;
  }
}

enum class Kind { kUnsigned, kSigned, kFloat, kBool, kString, kInvalid };
Kind KindOf(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kUint16:
    case ValueType::kUint32:
    case ValueType::kUint64:
      return Kind::kUnsigned;
    case ValueType::kInt8:
    case ValueType::kInt16:
    case ValueType::kInt32:
    case ValueType::kInt64:
      return Kind::kSigned;
    case ValueType::kFloat32:
    case ValueType::kFloat64:
      return Kind::kFloat;
    case ValueType::kBool:
      return Kind::kBool;
    case ValueType::kString:
      return Kind::kString;
    case ValueType::kArray:
      break;
  }
  return Kind::kInvalid;
}

// Checks that `v` holds the variant alternative its type promises, with values in range.
absl::Status ValidateValue(absl::string_view key, const Value& v) {
  const bool array = v.is_array();
  const ValueType t = array ? v.elem_type : v.type;
  const Kind kind = KindOf(t);
  if (kind == Kind::kInvalid) {
    return KeyError(key, array ? "arrays of arrays (or of an unknown type) cannot be written"
                               : "unknown value type");
  }
  bool holds = false;
  bool in_range = true;
  switch (kind) {
    case Kind::kUnsigned:
      if (array) {
        if (const auto* a = std::get_if<std::vector<uint64_t>>(&v.data)) {
          holds = true;
          for (uint64_t x : *a) in_range = in_range && FitsUnsigned(t, x);
        }
      } else if (const auto* x = std::get_if<uint64_t>(&v.data)) {
        holds = true;
        in_range = FitsUnsigned(t, *x);
      }
      break;
    case Kind::kSigned:
      if (array) {
        if (const auto* a = std::get_if<std::vector<int64_t>>(&v.data)) {
          holds = true;
          for (int64_t x : *a) in_range = in_range && FitsSigned(t, x);
        }
      } else if (const auto* x = std::get_if<int64_t>(&v.data)) {
        holds = true;
        in_range = FitsSigned(t, *x);
      }
      break;
    case Kind::kFloat:
      holds = array ? std::holds_alternative<std::vector<double>>(v.data)
                    : std::holds_alternative<double>(v.data);
      break;
    case Kind::kBool:
      holds = array ? std::holds_alternative<std::vector<bool>>(v.data)
                    : std::holds_alternative<bool>(v.data);
      break;
    case Kind::kString:
      holds = array ? std::holds_alternative<std::vector<std::string>>(v.data)
                    : std::holds_alternative<std::string>(v.data);
      break;
    case Kind::kInvalid:
      break;
  }
  if (!holds) {
    return KeyError(key, absl::StrCat("value of type ", array ? "ARRAY of " : "",
                                      ValueTypeName(t), " holds data of another kind"));
  }
  if (!in_range) return KeyError(key, absl::StrCat("value out of range for ", ValueTypeName(t)));
  return absl::OkStatus();
}

// One scalar of type `t` from the widened representation.
template <typename Wide>
void PutScalar(std::string* out, ValueType t, const Wide& x) {
  if constexpr (std::is_same_v<Wide, std::string>) {
    PutString(out, x);
  } else if constexpr (std::is_same_v<Wide, bool>) {
    Put<uint8_t>(out, x ? 1 : 0);
  } else {
    switch (t) {
      case ValueType::kUint8: Put(out, static_cast<uint8_t>(x)); break;
      case ValueType::kInt8: Put(out, static_cast<int8_t>(x)); break;
      case ValueType::kUint16: Put(out, static_cast<uint16_t>(x)); break;
      case ValueType::kInt16: Put(out, static_cast<int16_t>(x)); break;
      case ValueType::kUint32: Put(out, static_cast<uint32_t>(x)); break;
      case ValueType::kInt32: Put(out, static_cast<int32_t>(x)); break;
      case ValueType::kUint64: Put(out, static_cast<uint64_t>(x)); break;
      case ValueType::kInt64: Put(out, static_cast<int64_t>(x)); break;
      case ValueType::kFloat32: Put(out, static_cast<float>(x)); break;
      case ValueType::kFloat64: Put(out, static_cast<double>(x)); break;
      default: break;  // validated before
    }
  }
}

// Type tag and payload of a validated value.
void PutValue(std::string* out, const Value& v) {
  Put<uint32_t>(out, static_cast<uint32_t>(v.type));
  if (v.is_array()) {
    Put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
    Put<uint64_t>(out, v.size());
  }
  std::visit(
      [&](const auto& d) {
        using T = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<T, std::vector<bool>>) {
          for (bool b : d) Put<uint8_t>(out, b ? 1 : 0);
        } else if constexpr (std::is_same_v<T, std::vector<uint64_t>> ||
                             std::is_same_v<T, std::vector<int64_t>> ||
                             std::is_same_v<T, std::vector<double>> ||
                             std::is_same_v<T, std::vector<std::string>>) {
          for (const auto& x : d) PutScalar(out, v.elem_type, x);
        } else {
          PutScalar(out, v.type, d);
        }
      },
      v.data);
}

absl::Status TensorError(absl::string_view name, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("gguf writer: tensor '", name, "': ", problem));
}

}  // namespace

void GgufWriter::Set(std::string key, Value value) {
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  kv_.emplace_back(std::move(key), std::move(value));
}

absl::Status GgufWriter::AddTensor(std::string name, std::vector<int64_t> shape,
                                   uint32_t ggml_type, std::string bytes) {
  if (name.size() > kMaxTensorName) {
    return TensorError(name, absl::StrCat("name is ", name.size(), " bytes long; the limit is ",
                                          kMaxTensorName));
  }
  for (const PendingTensor& t : tensors_) {
    if (t.name == name) return TensorError(name, "duplicate tensor name");
  }
  if (shape.empty() || shape.size() > 4) {
    return TensorError(name, absl::StrCat(shape.size(), " dims; must be 1..4"));
  }
  const GgmlTypeInfo* type = FindGgmlType(ggml_type);
  if (type == nullptr) return TensorError(name, absl::StrCat("unknown ggml type id ", ggml_type));
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] < 1) {
      return TensorError(name, absl::StrCat("ne[", d, "] = ", shape[d], " is not positive"));
    }
    if (__builtin_mul_overflow(n, shape[d], &n)) {
      return TensorError(name, "element count overflows int64");
    }
  }
  if (shape[0] % type->block_elems != 0) {
    return TensorError(name, absl::StrCat("ne[0] = ", shape[0], " is not a multiple of the ",
                                          type->name, " block size ", type->block_elems));
  }
  int64_t expected = 0;
  if (__builtin_mul_overflow(n / type->block_elems, type->block_bytes, &expected)) {
    return TensorError(name, "byte size overflows int64");
  }
  if (static_cast<uint64_t>(expected) != bytes.size()) {
    return TensorError(name, absl::StrCat(bytes.size(), " data bytes given, but the shape and ",
                                          type->name, " need ", expected));
  }
  tensors_.push_back({std::move(name), std::move(shape), ggml_type, std::move(bytes)});
  return absl::OkStatus();
}

absl::StatusOr<std::string> GgufWriter::Serialize() const {
  uint64_t alignment = kDefaultAlignment;
  for (const auto& [key, value] : kv_) {
    if (key.empty()) return absl::InvalidArgumentError("gguf writer: empty metadata key");
    ANVIL_RETURN_IF_ERROR(ValidateValue(key, value));
    if (key == "general.alignment") {
      if (value.type != ValueType::kUint32) {
        return KeyError(key, absl::StrCat("must be UINT32, not ", ValueTypeName(value.type)));
      }
      alignment = std::get<uint64_t>(value.data);
      if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        return KeyError(key, absl::StrCat(alignment, " is not a nonzero power of two"));
      }
    }
  }

  std::string out;
  out.append("GGUF", 4);
  Put<uint32_t>(&out, kVersion);
  Put<uint64_t>(&out, tensors_.size());
  Put<uint64_t>(&out, kv_.size());
  for (const auto& [key, value] : kv_) {
    PutString(&out, key);
    PutValue(&out, value);
  }
  uint64_t offset = 0;  // relative to the data section
  for (const PendingTensor& t : tensors_) {
    PutString(&out, t.name);
    Put<uint32_t>(&out, static_cast<uint32_t>(t.shape.size()));
    for (int64_t ne : t.shape) Put<uint64_t>(&out, static_cast<uint64_t>(ne));
    Put<uint32_t>(&out, t.ggml_type);
    Put<uint64_t>(&out, offset);
    offset += AlignUp(t.bytes.size(), alignment);
  }
  if (tensors_.empty()) return out;  // no data section, so no padding
  out.resize(AlignUp(out.size(), alignment), '\0');
  out.reserve(out.size() + offset);
  for (const PendingTensor& t : tensors_) {
    out.append(t.bytes);
    out.resize(AlignUp(out.size(), alignment), '\0');
  }
  return out;
}

absl::Status GgufWriter::WriteFile(const std::string& path) const {
  ANVIL_ASSIGN_OR_RETURN(const std::string bytes, Serialize());
  return WriteFileAtomically(path, bytes);
}

}  // namespace anvil::gguf
