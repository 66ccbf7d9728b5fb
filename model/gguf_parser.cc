// The defensive GGUF parser: header, metadata pairs, tensor infos, alignment and data bounds.
// Every size and offset is overflow-checked and compared with the bytes left BEFORE it is used
// or allocated for; any problem is InvalidArgument "<name>: <field> at byte <offset>: <problem>".
// Choices beyond ggml: zero-sized dimensions are rejected (ggml accepts them), as are
// byte-swapped (big-endian) files.
#include "model/gguf_parser.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/core/status_macros.h"

namespace anvil::gguf {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader copies little-endian fields directly");

// Field names are built only when an error is reported.
using FieldFn = absl::FunctionRef<std::string()>;

constexpr uint32_t kMaxValueType = static_cast<uint32_t>(ValueType::kFloat64);
constexpr uint64_t kMaxTensorName = 63;  // ggml: strlen(name) < GGML_MAX_NAME (64)
constexpr uint32_t kMaxDims = 4;
// Smallest possible encodings, used to bound counts by the bytes left before reserving.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;          // key len, 1-byte key, type, u8 value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;  // name len, n_dims, ne[0], type, off

// Untrusted text in messages: escaped and cut.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 64;
  if (s.size() <= kMax) return absl::StrCat("'", absl::Utf8SafeCEscape(s), "'");
  return absl::StrCat("'", absl::Utf8SafeCEscape(s.substr(0, kMax)), "...'");
}

// Encoded size of one element of a scalar type (strings: at least their u64 length).
uint64_t MinEncodedBytes(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool:
      return 1;
    case ValueType::kUint16:
    case ValueType::kInt16:
      return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32:
      return 4;
    default:
      return 8;  // UINT64, INT64, FLOAT64, STRING (its length)
  }
}

// A bounds-checked read position over the file bytes.
class Cursor {
 public:
  Cursor(const std::string& name, const uint8_t* base, uint64_t size)
      : name_(name), base_(base), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t size() const { return size_; }
  uint64_t remaining() const { return size_ - pos_; }
  const uint8_t* here() const { return base_ + pos_; }
  void Skip(uint64_t n) { pos_ += n; }  // callers have checked Need(n)

  absl::Status Error(absl::string_view field, uint64_t at, absl::string_view problem) const {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", field, " at byte ", at, ": ",
                                                   problem));
  }

  absl::Status Need(FieldFn field, uint64_t n) const {
    if (n <= remaining()) return absl::OkStatus();
    return Error(field(), pos_,
                 absl::StrCat("truncated: needs ", n, " bytes but only ", remaining(),
                              " remain in the file (", size_, " bytes)"));
  }

  // One little-endian scalar.
  template <typename T>
  absl::Status Read(FieldFn field, T* out) {
    ANVIL_RETURN_IF_ERROR(Need(field, sizeof(T)));
    std::memcpy(out, here(), sizeof(T));
    pos_ += sizeof(T);
    return absl::OkStatus();
  }

  // u64 length + bytes, the length capped at `max_len`.
  absl::Status ReadString(FieldFn field, uint64_t max_len, std::string* out) {
    const uint64_t at = pos_;
    uint64_t len = 0;
    ANVIL_RETURN_IF_ERROR(Read(field, &len));
    if (len > max_len) {
      return Error(field(), at,
                   absl::StrCat("string length ", len, " exceeds the limit of ", max_len,
                                " bytes"));
    }
    ANVIL_RETURN_IF_ERROR(Need(field, len));
    out->assign(reinterpret_cast<const char*>(here()), len);
    pos_ += len;
    return absl::OkStatus();
  }

 private:
  const std::string& name_;
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

// Reads `n` packed elements whose total size the caller has checked.
template <typename Stored, typename Raw>
std::vector<Stored> ReadPacked(Cursor& c, uint64_t n) {
  std::vector<Stored> out(n);
  for (uint64_t i = 0; i < n; ++i) {
    Raw x;
    std::memcpy(&x, c.here(), sizeof(Raw));
    c.Skip(sizeof(Raw));
    out[i] = static_cast<Stored>(x);
  }
  return out;
}

absl::Status ParseArray(Cursor& c, const ReadLimits& lim, const std::string& field, Value* v) {
  const uint64_t type_at = c.pos();
  uint32_t et = 0;
  ANVIL_RETURN_IF_ERROR(c.Read([&] { return field + " element type"; }, &et));
  if (et == static_cast<uint32_t>(ValueType::kArray)) {
    return c.Error(field, type_at, "nested arrays are not supported");
  }
  if (et > kMaxValueType) {
    return c.Error(field, type_at, absl::StrCat("unknown array element type ", et));
  }
  const auto elem = static_cast<ValueType>(et);
  const uint64_t count_at = c.pos();
  uint64_t n = 0;
  ANVIL_RETURN_IF_ERROR(c.Read([&] { return field + " count"; }, &n));
  if (n > lim.max_array_elems) {
    return c.Error(field, count_at,
                   absl::StrCat("array count ", n, " exceeds the limit of ", lim.max_array_elems));
  }
  uint64_t min_bytes = 0;
  if (__builtin_mul_overflow(n, MinEncodedBytes(elem), &min_bytes) || min_bytes > c.remaining()) {
    return c.Error(field, count_at,
                   absl::StrCat("truncated: array of ", n, " ", ValueTypeName(elem),
                                " elements needs at least ", n, " x ", MinEncodedBytes(elem),
                                " bytes but only ", c.remaining(), " remain"));
  }
  v->type = ValueType::kArray;
  v->elem_type = elem;
  switch (elem) {
    case ValueType::kUint8: v->data = ReadPacked<uint64_t, uint8_t>(c, n); break;
    case ValueType::kInt8: v->data = ReadPacked<int64_t, int8_t>(c, n); break;
    case ValueType::kUint16: v->data = ReadPacked<uint64_t, uint16_t>(c, n); break;
    case ValueType::kInt16: v->data = ReadPacked<int64_t, int16_t>(c, n); break;
    case ValueType::kUint32: v->data = ReadPacked<uint64_t, uint32_t>(c, n); break;
    case ValueType::kInt32: v->data = ReadPacked<int64_t, int32_t>(c, n); break;
    case ValueType::kUint64: v->data = ReadPacked<uint64_t, uint64_t>(c, n); break;
    case ValueType::kInt64: v->data = ReadPacked<int64_t, int64_t>(c, n); break;
    case ValueType::kFloat32: v->data = ReadPacked<double, float>(c, n); break;
    case ValueType::kFloat64: v->data = ReadPacked<double, double>(c, n); break;
    case ValueType::kBool: {
      std::vector<bool> out(n);
      for (uint64_t i = 0; i < n; ++i) {
        const uint8_t b = *c.here();
        if (b > 1) {
          return c.Error(absl::StrCat(field, " element ", i), c.pos(),
                         absl::StrCat("bool value ", b, " is not 0 or 1"));
        }
        out[i] = b == 1;
        c.Skip(1);
      }
      v->data = std::move(out);
      break;
    }
    case ValueType::kString: {
      std::vector<std::string> out;
      out.reserve(n);  // bounded: n * 8 bytes fit in the file
      for (uint64_t i = 0; i < n; ++i) {
        std::string s;
        ANVIL_RETURN_IF_ERROR(c.ReadString([&] { return absl::StrCat(field, " element ", i); },
                                           lim.max_string_bytes, &s));
        out.push_back(std::move(s));
      }
      v->data = std::move(out);
      break;
    }
    case ValueType::kArray:
      break;  // rejected above
  }
  return absl::OkStatus();
}

template <typename Stored, typename Raw>
absl::Status ReadScalar(Cursor& c, FieldFn field, Value* v) {
  Raw x;
  ANVIL_RETURN_IF_ERROR(c.Read(field, &x));
  v->data = static_cast<Stored>(x);
  return absl::OkStatus();
}

absl::Status ParseValue(Cursor& c, const ReadLimits& lim, const std::string& field,
                        ValueType type, Value* v) {
  const auto field_fn = [&] { return field; };
  v->type = type;
  switch (type) {
    case ValueType::kUint8: return ReadScalar<uint64_t, uint8_t>(c, field_fn, v);
    case ValueType::kInt8: return ReadScalar<int64_t, int8_t>(c, field_fn, v);
    case ValueType::kUint16: return ReadScalar<uint64_t, uint16_t>(c, field_fn, v);
    case ValueType::kInt16: return ReadScalar<int64_t, int16_t>(c, field_fn, v);
    case ValueType::kUint32: return ReadScalar<uint64_t, uint32_t>(c, field_fn, v);
    case ValueType::kInt32: return ReadScalar<int64_t, int32_t>(c, field_fn, v);
    case ValueType::kUint64: return ReadScalar<uint64_t, uint64_t>(c, field_fn, v);
    case ValueType::kInt64: return ReadScalar<int64_t, int64_t>(c, field_fn, v);
    case ValueType::kFloat32: return ReadScalar<double, float>(c, field_fn, v);
    case ValueType::kFloat64: return ReadScalar<double, double>(c, field_fn, v);
    case ValueType::kBool: {
      const uint64_t at = c.pos();
      uint8_t x = 0;
      ANVIL_RETURN_IF_ERROR(c.Read(field_fn, &x));
      if (x > 1) return c.Error(field, at, absl::StrCat("bool value ", x, " is not 0 or 1"));
      v->data = x == 1;
      return absl::OkStatus();
    }
    case ValueType::kString: {
      std::string s;
      ANVIL_RETURN_IF_ERROR(c.ReadString(field_fn, lim.max_string_bytes, &s));
      v->data = std::move(s);
      return absl::OkStatus();
    }
    case ValueType::kArray:
      return ParseArray(c, lim, field, v);
  }
  return absl::OkStatus();
}

// `general.alignment` must be a UINT32 nonzero power of two.
absl::Status CheckAlignment(const Cursor& c, uint64_t at, const Value& v, uint64_t* alignment) {
  if (v.type != ValueType::kUint32) {
    return c.Error("kv 'general.alignment'", at,
                   absl::StrCat("alignment must be UINT32, found ", ValueTypeName(v.type)));
  }
  const uint64_t a = std::get<uint64_t>(v.data);
  if (a == 0 || (a & (a - 1)) != 0) {
    return c.Error("kv 'general.alignment'", at,
                   absl::StrCat("alignment ", a, " is not a nonzero power of two"));
  }
  *alignment = a;
  return absl::OkStatus();
}

template <typename Map>
absl::Status ParseTensorInfo(Cursor& c, const ReadLimits& lim, uint64_t index,
                             uint64_t alignment, const Map& seen, TensorInfo* t) {
  const uint64_t at = c.pos();
  const std::string name_field = absl::StrCat("name of tensor ", index);
  uint64_t len = 0;
  ANVIL_RETURN_IF_ERROR(c.Read([&] { return name_field; }, &len));
  if (len > kMaxTensorName) {
    return c.Error(name_field, at,
                   absl::StrCat("tensor name is ", len, " bytes long; the limit is ",
                                kMaxTensorName));
  }
  ANVIL_RETURN_IF_ERROR(c.Need([&] { return name_field; }, len));
  t->name.assign(reinterpret_cast<const char*>(c.here()), len);
  c.Skip(len);
  const std::string field = absl::StrCat("tensor ", Quote(t->name));
  if (seen.contains(t->name)) return c.Error(field, at, "duplicate tensor name");

  uint64_t field_at = c.pos();
  uint32_t n_dims = 0;
  ANVIL_RETURN_IF_ERROR(c.Read([&] { return field + " n_dims"; }, &n_dims));
  if (n_dims == 0 || n_dims > kMaxDims) {
    return c.Error(field + " n_dims", field_at,
                   absl::StrCat("n_dims ", n_dims, " is not in 1..", kMaxDims));
  }
  t->shape.assign(n_dims, 1);
  int64_t n_elems = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    const std::string dim_field = absl::StrCat(field, " ne[", d, "]");
    field_at = c.pos();
    uint64_t ne = 0;
    ANVIL_RETURN_IF_ERROR(c.Read([&] { return dim_field; }, &ne));
    if (ne == 0) return c.Error(dim_field, field_at, "dimension is 0 (empty tensors are rejected)");
    if (ne > static_cast<uint64_t>(lim.max_dim)) {
      return c.Error(dim_field, field_at,
                     absl::StrCat("dimension ", ne, " exceeds the limit of ", lim.max_dim));
    }
    t->shape[d] = static_cast<int64_t>(ne);
    if (__builtin_mul_overflow(n_elems, t->shape[d], &n_elems)) {
      return c.Error(dim_field, field_at, "element count overflows int64");
    }
  }

  field_at = c.pos();
  ANVIL_RETURN_IF_ERROR(c.Read([&] { return field + " type"; }, &t->ggml_type));
  const GgmlTypeInfo* type = FindGgmlType(t->ggml_type);
  if (type == nullptr) {
    return c.Error(field + " type", field_at,
                   absl::StrCat("unknown ggml type id ", t->ggml_type));
  }
  if (t->shape[0] % type->block_elems != 0) {
    return c.Error(field + " type", field_at,
                   absl::StrCat("ne[0] = ", t->shape[0], " is not a multiple of the ", type->name,
                                " block size ", type->block_elems));
  }
  // n_elems is a multiple of the block size because ne[0] is.
  int64_t bytes = 0;
  if (__builtin_mul_overflow(n_elems / type->block_elems, type->block_bytes, &bytes)) {
    return c.Error(field + " type", field_at, "byte size overflows int64");
  }
  t->size_bytes = static_cast<uint64_t>(bytes);

  field_at = c.pos();
  ANVIL_RETURN_IF_ERROR(c.Read([&] { return field + " offset"; }, &t->offset));
  if (t->offset % alignment != 0) {
    return c.Error(field + " offset", field_at,
                   absl::StrCat("offset ", t->offset, " is not a multiple of the alignment ",
                                alignment));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status GgufParser::Parse(GgufFile& f, const ReadLimits& lim) {
  Cursor c(f.name_, f.base_, f.size_);

  // Header.
  ANVIL_RETURN_IF_ERROR(c.Need([] { return std::string("magic"); }, 4));
  if (std::memcmp(c.here(), "GGUF", 4) != 0) {
    const uint8_t* m = c.here();
    return c.Error("magic", 0,
                   absl::StrFormat("not a GGUF file: magic is %02x %02x %02x %02x, expected "
                                   "47 47 55 46 (\"GGUF\")",
                                   m[0], m[1], m[2], m[3]));
  }
  c.Skip(4);
  ANVIL_RETURN_IF_ERROR(c.Read([] { return std::string("version"); }, &f.version_));
  if (f.version_ == 1) {
    return c.Error("version", 4, "GGUF v1 is not supported (only v2 and v3)");
  }
  if (f.version_ != 0 && (f.version_ & 0xFFFFu) == 0) {
    return c.Error("version", 4,
                   absl::StrFormat("version reads as 0x%08x: a byte-swapped (big-endian) file; "
                                   "only little-endian files are supported",
                                   f.version_));
  }
  if (f.version_ != 2 && f.version_ != 3) {
    return c.Error("version", 4,
                   absl::StrCat("unsupported version ", f.version_, " (expected 2 or 3)"));
  }
  uint64_t n_tensors = 0, n_kv = 0;
  ANVIL_RETURN_IF_ERROR(c.Read([] { return std::string("tensor count"); }, &n_tensors));
  ANVIL_RETURN_IF_ERROR(c.Read([] { return std::string("kv count"); }, &n_kv));
  if (n_tensors > lim.max_tensors) {
    return c.Error("tensor count", 8,
                   absl::StrCat("tensor count ", n_tensors, " exceeds the limit of ",
                                lim.max_tensors));
  }
  if (n_kv > lim.max_kv) {
    return c.Error("kv count", 16,
                   absl::StrCat("kv count ", n_kv, " exceeds the limit of ", lim.max_kv));
  }
  // Bound both counts by the bytes left (each record has a minimum size) before reserving.
  uint64_t min_kv = 0, min_ti = 0, min_total = 0;
  if (__builtin_mul_overflow(n_kv, kMinKvBytes, &min_kv) || min_kv > c.remaining()) {
    return c.Error("kv count", 16,
                   absl::StrCat("truncated: ", n_kv, " metadata pairs need at least ", min_kv,
                                " bytes but only ", c.remaining(), " remain"));
  }
  if (__builtin_mul_overflow(n_tensors, kMinTensorInfoBytes, &min_ti) ||
      __builtin_add_overflow(min_kv, min_ti, &min_total) || min_total > c.remaining()) {
    return c.Error("tensor count", 8,
                   absl::StrCat("truncated: ", n_tensors, " tensor infos need at least ", min_ti,
                                " bytes but only ", c.remaining() - min_kv,
                                " remain after the metadata"));
  }

  // Metadata.
  f.kv_.reserve(n_kv);
  f.kv_index_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t at = c.pos();
    std::string key;
    ANVIL_RETURN_IF_ERROR(c.ReadString([&] { return absl::StrCat("key of kv ", i); },
                                       lim.max_string_bytes, &key));
    if (key.empty()) return c.Error(absl::StrCat("key of kv ", i), at, "key is empty");
    const std::string field = absl::StrCat("kv ", Quote(key));
    if (f.kv_index_.contains(key)) return c.Error(field, at, "duplicate key");
    const uint64_t type_at = c.pos();
    uint32_t type = 0;
    ANVIL_RETURN_IF_ERROR(c.Read([&] { return field + " value type"; }, &type));
    if (type > kMaxValueType) {
      return c.Error(field + " value type", type_at, absl::StrCat("unknown value type ", type));
    }
    Value v;
    ANVIL_RETURN_IF_ERROR(ParseValue(c, lim, field, static_cast<ValueType>(type), &v));
    if (key == "general.alignment") ANVIL_RETURN_IF_ERROR(CheckAlignment(c, at, v, &f.alignment_));
    f.kv_index_.emplace(key, f.kv_.size());
    f.kv_.emplace_back(std::move(key), std::move(v));
  }

  // Tensor infos (the count was bounded by the bytes left above, so reserving is safe).
  f.tensors_.reserve(n_tensors);
  f.tensor_index_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    ANVIL_RETURN_IF_ERROR(ParseTensorInfo(c, lim, i, f.alignment_, f.tensor_index_, &t));
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(std::move(t));
  }

  // Data section: starts at the next multiple of the alignment.
  const uint64_t infos_end = c.pos();
  uint64_t data_start = 0;
  if (__builtin_add_overflow(infos_end, f.alignment_ - 1, &data_start)) {
    return c.Error("data section", infos_end, "aligned start overflows");
  }
  data_start -= data_start % f.alignment_;
  if (n_tensors == 0) {
    f.data_offset_ = std::min(data_start, f.size_);  // no data: padding may be absent
    return absl::OkStatus();
  }
  if (data_start > f.size_) {
    return c.Error("data section", infos_end,
                   absl::StrCat("truncated: aligned start ", data_start,
                                " is past the end of the file (", f.size_, " bytes)"));
  }
  f.data_offset_ = data_start;
  for (TensorInfo& t : f.tensors_) {
    const std::string field = absl::StrCat("tensor ", Quote(t.name), " data");
    uint64_t start = 0, end = 0;
    if (__builtin_add_overflow(data_start, t.offset, &start) ||
        __builtin_add_overflow(start, t.size_bytes, &end)) {
      return c.Error(field, data_start,
                     absl::StrCat("offset ", t.offset, " + size ", t.size_bytes, " overflows"));
    }
    if (end > f.size_) {
      return c.Error(field, start,
                     absl::StrCat("ends at byte ", end, ", past the end of the file (", f.size_,
                                  " bytes)"));
    }
    t.data = f.base_ + start;
  }
  return absl::OkStatus();
}

}  // namespace anvil::gguf
