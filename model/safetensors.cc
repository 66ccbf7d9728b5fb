// The safetensors reader: element-type names and sizes, and SafetensorsFile (mmap or caller
// buffer; defensive: checked arithmetic, caps on the header and its entries, every problem an
// InvalidArgument naming the file, tensor and offsets). The writer and the atomic file write live
// in safetensors_writer.cc.
#include "model/safetensors.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <exception>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/half.h"
#include "kernels/core/status_macros.h"
#include "model/file_io.h"
#include "nlohmann/json.hpp"

namespace anvil::safetensors {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian data; the reader copies it directly");

using Json = nlohmann::json;
constexpr char kMetadataKey[] = "__metadata__";

struct TypeRow {
  ElementType type;
  const char* name;
  int64_t size;
};
constexpr TypeRow kTypes[] = {
    {ElementType::kBool, "BOOL", 1},      {ElementType::kU8, "U8", 1},
    {ElementType::kI8, "I8", 1},          {ElementType::kU16, "U16", 2},
    {ElementType::kI16, "I16", 2},        {ElementType::kU32, "U32", 4},
    {ElementType::kI32, "I32", 4},        {ElementType::kU64, "U64", 8},
    {ElementType::kI64, "I64", 8},        {ElementType::kF16, "F16", 2},
    {ElementType::kBF16, "BF16", 2},      {ElementType::kF32, "F32", 4},
    {ElementType::kF64, "F64", 8},        {ElementType::kF8E4M3, "F8_E4M3", 1},
    {ElementType::kF8E5M2, "F8_E5M2", 1},
};

// Untrusted text in messages: escaped, cut, in double quotes.
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 80;
  if (s.size() <= kMax) return absl::StrCat("\"", absl::Utf8SafeCEscape(s), "\"");
  return absl::StrCat("\"", absl::Utf8SafeCEscape(s.substr(0, kMax)), "...\"");
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Thrown from the JSON parser callback to stop early; caught in Parse.
struct HeaderLimitError {
  std::string message;
};

// Reads a non-negative JSON integer.
bool AsUint(const Json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

}  // namespace

const char* ElementTypeName(ElementType t) {
  for (const TypeRow& r : kTypes) {
    if (r.type == t) return r.name;
  }
  return "?";
}

std::optional<ElementType> ParseElementType(std::string_view name) {
  for (const TypeRow& r : kTypes) {
    if (name == r.name) return r.type;
  }
  return std::nullopt;
}

int64_t ElementSize(ElementType t) {
  for (const TypeRow& r : kTypes) {
    if (r.type == t) return r.size;
  }
  return 0;
}

int64_t TensorView::num_elements() const {
  // Unsigned so that an empty tensor with huge dimensions before its zero ([2^62, 2, 0] U8, which
  // the reader accepts like Python's) yields 0 instead of signed-overflow UB; a parsed non-empty
  // tensor's product fits, being bounded by its byte count.
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return static_cast<int64_t>(n);
}

// ---------------------------------------------------------------------------------------------
// Reader

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) munmap(mapping_, size_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path,
                                                                       const ReadLimits& limits) {
  ANVIL_ASSIGN_OR_RETURN(MappedFile mapped, MappedFile::Open(path));
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile);
  file->name_ = path;
  file->size_ = mapped.size();
  file->base_ = mapped.data();
  file->mapping_ = mapped.Release();  // unmapped by the destructor, also on parse errors below
  ANVIL_RETURN_IF_ERROR(file->Parse(limits));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(
    std::string name, absl::Span<const uint8_t> bytes, const ReadLimits& limits) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile);
  file->name_ = std::move(name);
  file->base_ = bytes.data();
  file->size_ = bytes.size();
  ANVIL_RETURN_IF_ERROR(file->Parse(limits));
  return file;
}

namespace {

// Helpers of SafetensorsFile::Parse; their messages lack the file name, which Parse prepends.
absl::Status Problem(auto&&... parts) { return absl::InvalidArgumentError(absl::StrCat(parts...)); }

// Parses the header JSON, recording the top-level keys in file order and refusing duplicates,
// nesting deeper than the format allows and more entries than the limits, while parsing (before
// they are allocated for).
absl::Status ParseHeaderJson(std::string_view text, const ReadLimits& limits, Json* root,
                             std::vector<std::string>* order) {
  absl::flat_hash_set<std::string> seen;
  bool in_metadata = false;
  uint64_t n_metadata = 0;
  uint64_t n_tensors = 0;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    using E = Json::parse_event_t;
    if ((event == E::object_start || event == E::array_start) && depth >= 3) {
      throw HeaderLimitError{"header JSON is nested deeper than the format allows"};
    }
    if (event == E::key && depth == 1) {
      std::string key = parsed.get<std::string>();
      in_metadata = key == kMetadataKey;
      if (!seen.insert(key).second) {
        throw HeaderLimitError{absl::StrCat("header lists ", Quote(key), " twice")};
      }
      if (!in_metadata && ++n_tensors > limits.max_tensors) {
        throw HeaderLimitError{
            absl::StrCat("header has more than ", limits.max_tensors, " tensors (the limit)")};
      }
      order->push_back(std::move(key));
    } else if (event == E::key && depth == 2 && in_metadata && ++n_metadata > limits.max_metadata) {
      throw HeaderLimitError{
          absl::StrCat("__metadata__ has more than ", limits.max_metadata, " entries (the limit)")};
    }
    return true;
  };
  try {
    *root = Json::parse(text.begin(), text.end(), callback);
  } catch (const HeaderLimitError& e) {
    return Problem(e.message);
  } catch (const std::exception& e) {
    // The parser's message may quote raw header bytes: escape them.
    return Problem("header (", text.size(),
                   " bytes) is not valid JSON: ", absl::Utf8SafeCEscape(e.what()));
  }
  if (!root->is_object()) return Problem("header is JSON but not an object");
  return absl::OkStatus();
}

// One tensor entry {"dtype", "shape", "data_offsets"}, checked against the data section size.
absl::StatusOr<TensorView> ParseTensorEntry(const std::string& key, const Json& entry,
                                            const ReadLimits& limits, uint64_t data_size,
                                            uint64_t file_size) {
  const std::string where = absl::StrCat("tensor ", Quote(key));
  if (!entry.is_object()) return Problem(where, ": entry is not an object");
  for (const auto& [field, unused] : entry.items()) {
    if (field != "dtype" && field != "shape" && field != "data_offsets") {
      return Problem(where, ": unexpected field ", Quote(field));
    }
  }
  TensorView t;
  t.name = key;
  auto dt = entry.find("dtype");
  if (dt == entry.end() || !dt->is_string()) return Problem(where, ": missing string \"dtype\"");
  const std::string dtype = dt->get<std::string>();
  const std::optional<ElementType> type = ParseElementType(dtype);
  if (!type) return Problem(where, ": unknown dtype ", Quote(dtype));
  t.dtype = *type;

  auto sh = entry.find("shape");
  if (sh == entry.end() || !sh->is_array()) return Problem(where, ": missing array \"shape\"");
  if (sh->size() > limits.max_dims) {
    return Problem(where, ": ", sh->size(), " dimensions exceed the limit of ", limits.max_dims);
  }
  uint64_t n_bytes = static_cast<uint64_t>(ElementSize(t.dtype));
  bool overflow = false;
  for (const Json& d : *sh) {
    uint64_t dim = 0;
    if (!AsUint(d, &dim) || dim > static_cast<uint64_t>(INT64_MAX)) {
      return Problem(where, ": shape entry ", d.dump(), " is not a non-negative integer");
    }
    t.shape.push_back(static_cast<int64_t>(dim));
    overflow = overflow || __builtin_mul_overflow(n_bytes, dim, &n_bytes);
  }
  if (overflow) {
    return Problem(where, ": shape ", ShapeString(t.shape), " ", dtype,
                   " overflows a 64-bit byte count");
  }

  auto off = entry.find("data_offsets");
  if (off == entry.end() || !off->is_array() || off->size() != 2 || !AsUint((*off)[0], &t.begin) ||
      !AsUint((*off)[1], &t.end)) {
    return Problem(where, ": \"data_offsets\" must be two non-negative integers [begin, end)");
  }
  const std::string range = absl::StrCat("data_offsets [", t.begin, ", ", t.end, ")");
  if (t.end < t.begin) return Problem(where, ": ", range, " end before begin");
  if (t.end > data_size) {
    return Problem(where, ": ", range, " run past the end of the data section (", data_size,
                   " bytes; the file is ", file_size, " bytes)");
  }
  if (t.end - t.begin != n_bytes) {
    return Problem(where, ": ", range, " but shape ", ShapeString(t.shape), " ", dtype, " needs ",
                   n_bytes, " bytes");
  }
  return t;
}

// The tensors must tile the data section: no overlap, no gap, nothing after the last one (what
// Python's reader demands).
absl::Status CheckTiling(const std::vector<TensorView>& tensors, uint64_t data_size) {
  std::vector<const TensorView*> by_offset;
  by_offset.reserve(tensors.size());
  for (const TensorView& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const TensorView* a, const TensorView* b) {
    return std::pair(a->begin, a->end) < std::pair(b->begin, b->end);
  });
  uint64_t covered = 0;
  const TensorView* prev = nullptr;
  for (const TensorView* t : by_offset) {
    const std::string range = absl::StrCat("data_offsets [", t->begin, ", ", t->end, ")");
    if (t->begin < covered) {
      return Problem("tensor ", Quote(t->name), ": ", range, " overlap tensor ", Quote(prev->name),
                     " at [", prev->begin, ", ", prev->end, ")");
    }
    if (t->begin > covered) {
      return Problem("tensor ", Quote(t->name), ": ", range, " leave bytes [", covered, ", ",
                     t->begin, ") of the data section unused (tensors must be packed)");
    }
    covered = t->end;
    prev = t;
  }
  if (covered != data_size) {
    return Problem("data section is ", data_size, " bytes but the tensors cover only ", covered,
                   " (trailing bytes)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SafetensorsFile::Parse(const ReadLimits& limits) {
  auto with_name = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat(name_, ": ", s.message()));
  };
  if (size_ < 8) {
    return with_name(Problem("truncated: the file is ", size_,
                             " bytes but a safetensors file starts with an 8-byte header length"));
  }
  std::memcpy(&header_len_, base_, 8);
  if (header_len_ > limits.max_header_bytes) {
    return with_name(Problem("header length ", header_len_, " exceeds the limit of ",
                             limits.max_header_bytes, " bytes"));
  }
  if (header_len_ > size_ - 8) {
    return with_name(Problem("truncated: header length ", header_len_,
                             " runs past the end of the file (", size_, " bytes, so at most ",
                             size_ - 8, " header bytes)"));
  }
  const uint64_t data_size = size_ - 8 - header_len_;

  Json root;
  std::vector<std::string> order;
  if (absl::Status s = ParseHeaderJson(header_json(), limits, &root, &order); !s.ok()) {
    return with_name(s);
  }
  if (auto it = root.find(kMetadataKey); it != root.end()) {
    if (!it->is_object()) return with_name(Problem("__metadata__ is not an object of strings"));
    for (const auto& [k, v] : it->items()) {
      if (!v.is_string()) {
        return with_name(
            Problem("__metadata__ entry ", Quote(k), " is not a string (", v.type_name(), ")"));
      }
      metadata_.emplace(k, v.get<std::string>());
    }
  }
  tensors_.reserve(order.size());
  for (const std::string& key : order) {
    if (key == kMetadataKey) continue;
    absl::StatusOr<TensorView> t = ParseTensorEntry(key, root.at(key), limits, data_size, size_);
    if (!t.ok()) return with_name(t.status());
    t->bytes = absl::MakeConstSpan(base_ + 8 + header_len_ + t->begin, t->end - t->begin);
    index_.emplace(t->name, tensors_.size());
    tensors_.push_back(*std::move(t));
  }
  if (absl::Status s = CheckTiling(tensors_, data_size); !s.ok()) return with_name(s);
  return absl::OkStatus();
}

std::string_view SafetensorsFile::header_json() const {
  return std::string_view(reinterpret_cast<const char*>(base_ + 8), header_len_);
}

absl::Span<const uint8_t> SafetensorsFile::data_section() const {
  return absl::MakeConstSpan(base_ + 8 + header_len_, size_ - 8 - header_len_);
}

const std::string* SafetensorsFile::FindMetadata(std::string_view key) const {
  auto it = metadata_.find(std::string(key));
  return it == metadata_.end() ? nullptr : &it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const TensorView& t : tensors_) out.push_back(t.name);
  return out;
}

const TensorView* SafetensorsFile::Find(std::string_view name) const {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<const TensorView*> SafetensorsFile::Get(std::string_view name) const {
  const TensorView* t = Find(name);
  if (t == nullptr) {
    return absl::NotFoundError(
        absl::StrCat(name_, ": no tensor ", Quote({name.data(), name.size()})));
  }
  return t;
}

absl::StatusOr<std::vector<float>> SafetensorsFile::ReadF32(std::string_view name) const {
  ANVIL_ASSIGN_OR_RETURN(const TensorView* t, Get(name));
  const size_t n = static_cast<size_t>(t->num_elements());
  std::vector<float> out(n);
  const uint8_t* p = t->bytes.data();
  switch (t->dtype) {
    case ElementType::kF32:
      if (n > 0) std::memcpy(out.data(), p, n * sizeof(float));
      break;
    case ElementType::kF16:
    case ElementType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = t->dtype == ElementType::kF16 ? HalfToFloat(h) : Bf16ToFloat(h);
      }
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": tensor ", Quote({name.data(), name.size()}), " is ",
                       ElementTypeName(t->dtype), "; only F32, F16 and BF16 read as float"));
  }
  return out;
}

}  // namespace anvil::safetensors
