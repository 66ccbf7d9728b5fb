// The safetensors writer (SafetensorsWriter: deterministic, compact JSON header padded so the data
// section is 8-byte aligned). Parsing and the element-type table live in safetensors.cc; the
// crash-safe file write it streams through is WriteFileAtomically in file_io.cc.
#include "model/safetensors.h"

#include <cstring>
#include <exception>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/status_macros.h"
#include "model/file_io.h"
#include "nlohmann/json.hpp"

namespace anvil::safetensors {
namespace {

using Json = nlohmann::json;
constexpr char kMetadataKey[] = "__metadata__";

// Caller text in messages: escaped, cut, in double quotes (as the reader quotes file text).
std::string Quote(absl::string_view s) {
  constexpr size_t kMax = 80;
  if (s.size() <= kMax) return absl::StrCat("\"", absl::Utf8SafeCEscape(s), "\"");
  return absl::StrCat("\"", absl::Utf8SafeCEscape(s.substr(0, kMax)), "...\"");
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// A JSON string literal, or InvalidArgument for text that is not UTF-8.
absl::StatusOr<std::string> JsonString(const std::string& s, absl::string_view what) {
  try {
    return Json(s).dump();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors writer: ", what, " ", Quote(s), " is not valid UTF-8"));
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Writer

absl::Status SafetensorsWriter::SetMetadata(std::string key, std::string value) {
  ANVIL_RETURN_IF_ERROR(JsonString(key, "metadata key").status());
  ANVIL_RETURN_IF_ERROR(JsonString(value, absl::StrCat("metadata value of ", key)).status());
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return absl::OkStatus();
    }
  }
  metadata_.emplace_back(std::move(key), std::move(value));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Check(const std::string& name, ElementType dtype,
                                      const std::vector<int64_t>& shape, size_t n_bytes) const {
  auto error = [&](auto&&... parts) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors writer: tensor ", Quote(name), ": ", parts...));
  };
  if (name.empty()) return absl::InvalidArgumentError("safetensors writer: empty tensor name");
  if (name == kMetadataKey) return error("the name is reserved");
  ANVIL_RETURN_IF_ERROR(JsonString(name, "tensor name").status());
  if (index_.contains(name)) return error("duplicate tensor name");
  uint64_t expected = static_cast<uint64_t>(ElementSize(dtype));
  for (int64_t d : shape) {
    if (d < 0) return error("shape ", ShapeString(shape), " has a negative dimension");
    if (__builtin_mul_overflow(expected, static_cast<uint64_t>(d), &expected)) {
      return error("shape ", ShapeString(shape), " overflows a 64-bit byte count");
    }
  }
  if (expected != n_bytes) {
    return error(n_bytes, " bytes given but shape ", ShapeString(shape), " ",
                 ElementTypeName(dtype), " needs ", expected);
  }
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Add(std::string name, ElementType dtype, std::vector<int64_t> shape,
                                    std::string bytes) {
  ANVIL_RETURN_IF_ERROR(Check(name, dtype, shape, bytes.size()));
  auto e = std::make_unique<Entry>(
      Entry{std::move(name), dtype, std::move(shape), std::move(bytes), {}});
  e->bytes =
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(e->owned.data()), e->owned.size());
  data_size_ += e->bytes.size();
  index_.emplace(e->name, entries_.size());
  entries_.push_back(std::move(e));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::AddView(std::string name, ElementType dtype,
                                        std::vector<int64_t> shape,
                                        absl::Span<const uint8_t> bytes) {
  ANVIL_RETURN_IF_ERROR(Check(name, dtype, shape, bytes.size()));
  auto e = std::make_unique<Entry>(Entry{std::move(name), dtype, std::move(shape), {}, bytes});
  data_size_ += bytes.size();
  index_.emplace(e->name, entries_.size());
  entries_.push_back(std::move(e));
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::AddF32View(std::string name, std::vector<int64_t> shape,
                                           absl::Span<const float> data) {
  return AddView(std::move(name), ElementType::kF32, std::move(shape),
                 absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(data.data()),
                                     data.size() * sizeof(float)));
}

std::string SafetensorsWriter::Header() const {
  // Compact JSON like Python's writer; names and values were checked to be UTF-8 when added.
  std::string json = "{";
  if (!metadata_.empty()) {
    absl::StrAppend(&json, "\"", kMetadataKey, "\":{");
    for (size_t i = 0; i < metadata_.size(); ++i) {
      absl::StrAppend(&json, i > 0 ? "," : "", Json(metadata_[i].first).dump(), ":",
                      Json(metadata_[i].second).dump());
    }
    json += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& e = *entries_[i];
    absl::StrAppend(&json, (i > 0 || !metadata_.empty()) ? "," : "", Json(e.name).dump(),
                    ":{\"dtype\":\"", ElementTypeName(e.dtype), "\",\"shape\":[",
                    absl::StrJoin(e.shape, ","), "],\"data_offsets\":[", offset, ",",
                    offset + e.bytes.size(), "]}");
    offset += e.bytes.size();
  }
  json += "}";
  // Pad with spaces (valid JSON whitespace) so that the data section starts 8-byte aligned.
  json.resize((json.size() + 7) / 8 * 8, ' ');
  std::string out(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json;
}

std::vector<absl::Span<const uint8_t>> SafetensorsWriter::DataPieces() const {
  std::vector<absl::Span<const uint8_t>> pieces;
  pieces.reserve(entries_.size());
  for (const auto& e : entries_) pieces.push_back(e->bytes);
  return pieces;
}

std::string SafetensorsWriter::Serialize() const {
  std::string out = Header();
  out.reserve(out.size() + data_size_);
  for (const auto& e : entries_) {
    out.append(reinterpret_cast<const char*>(e->bytes.data()), e->bytes.size());
  }
  return out;
}

absl::Status SafetensorsWriter::WriteFile(const std::string& path) const {
  const std::string header = Header();
  std::vector<absl::Span<const uint8_t>> pieces;
  pieces.reserve(entries_.size() + 1);
  pieces.push_back(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(header.data()), header.size()));
  for (const auto& e : entries_) pieces.push_back(e->bytes);
  return anvil::WriteFileAtomically(path, pieces);
}

}  // namespace anvil::safetensors
