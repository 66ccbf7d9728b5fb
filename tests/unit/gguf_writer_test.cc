// GgufWriter -> GgufFile round trips: every value type (scalars and arrays), tensors of several
// ggml types and shapes at alignments 32/64/128, the data layout ggml insists on, writer-side
// validation errors, and the atomic WriteFile.
#include "model/gguf_writer.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "tests/testing/status_matchers.h"

namespace anvil::gguf {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const std::string& bytes) {
  return GgufFile::FromBuffer("test.gguf", absl::MakeConstSpan(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

// Deterministic filler bytes for tensor data (the reader does not look inside blocks).
std::string Filler(size_t n, uint8_t seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + 1) & 0xFF);
  return s;
}

uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

std::vector<std::pair<std::string, Value>> EveryScalar() {
  return {
      {"t.u8", Value::Uint8(200)},
      {"t.i8", Value::Int8(-100)},
      {"t.u16", Value::Uint16(65535)},
      {"t.i16", Value::Int16(-32768)},
      {"t.u32", Value::Uint32(4000000000u)},
      {"t.i32", Value::Int32(-2000000000)},
      {"t.f32", Value::Float32(0.1f)},
      {"t.bool", Value::Bool(true)},
      {"t.str", Value::String(std::string("h\xC3\xA9llo\0world", 12))},
      {"t.u64", Value::Uint64(std::numeric_limits<uint64_t>::max())},
      {"t.i64", Value::Int64(std::numeric_limits<int64_t>::min())},
      {"t.f64", Value::Float64(1e300)},
      {"t.empty_str", Value::String("")},
  };
}

std::vector<std::pair<std::string, Value>> EveryArray() {
  return {
      {"a.u8", Value::Array(ValueType::kUint8, std::vector<uint64_t>{0, 1, 255})},
      {"a.i8", Value::Array(ValueType::kInt8, std::vector<int64_t>{-128, 0, 127})},
      {"a.u16", Value::Array(ValueType::kUint16, std::vector<uint64_t>{65535, 7})},
      {"a.i16", Value::Array(ValueType::kInt16, std::vector<int64_t>{-32768, 32767})},
      {"a.u32", Value::Array(ValueType::kUint32, std::vector<uint64_t>{4294967295u})},
      {"a.i32", Value::Int32Array({-1, 2, -3, 2147483647})},
      {"a.f32", Value::Float32Array({0.5f, -1.25f, 3.4e38f})},
      {"a.bool", Value::Array(ValueType::kBool, std::vector<bool>{true, false, true})},
      {"a.str", Value::StringArray({"", "a b", std::string("\0x", 2), "\xC4\xA0t"})},
      {"a.u64", Value::Array(ValueType::kUint64, std::vector<uint64_t>{1ull << 63, 0})},
      {"a.i64", Value::Array(ValueType::kInt64, std::vector<int64_t>{-(1ll << 62), 5})},
      {"a.f64", Value::Array(ValueType::kFloat64, std::vector<double>{1e-300, -2.5})},
      {"a.empty", Value::Array(ValueType::kUint32, std::vector<uint64_t>{})},
  };
}

TEST(GgufWriterTest, RoundTripsEveryScalarAndArrayTypeInOrder) {
  GgufWriter w;
  auto kvs = EveryScalar();
  for (auto& kv : EveryArray()) kvs.push_back(kv);
  for (const auto& [k, v] : kvs) w.Set(k, v);
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(bytes));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_TRUE(f->tensors().empty());
  ASSERT_EQ(f->metadata().size(), kvs.size());
  for (size_t i = 0; i < kvs.size(); ++i) {
    EXPECT_EQ(f->metadata()[i].first, kvs[i].first);
    EXPECT_EQ(f->metadata()[i].second, kvs[i].second) << kvs[i].first << ": "
                                                       << f->metadata()[i].second.DebugString();
  }
  // Every stored type id survives (Value::operator== compares the type too, but be explicit).
  EXPECT_EQ(f->Find("t.u16")->type, ValueType::kUint16);
  EXPECT_EQ(f->Find("a.i16")->elem_type, ValueType::kInt16);
  EXPECT_EQ(f->Find("a.str")->size(), 4u);
  EXPECT_EQ(f->Find("a.empty")->size(), 0u);
}

TEST(GgufWriterTest, TypedGettersReadWhatWasWritten) {
  GgufWriter w;
  for (const auto& [k, v] : EveryScalar()) w.Set(k, v);
  for (const auto& [k, v] : EveryArray()) w.Set(k, v);
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(bytes));
  EXPECT_EQ(*f->GetInt("t.u8"), 200);
  EXPECT_EQ(*f->GetInt("t.i8"), -100);
  EXPECT_EQ(*f->GetInt("t.u32"), 4000000000);
  EXPECT_EQ(*f->GetInt("t.i64"), std::numeric_limits<int64_t>::min());
  EXPECT_THAT(f->GetInt("t.u64"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("does not fit in int64")));
  EXPECT_EQ(*f->GetFloat("t.f32"), static_cast<double>(0.1f));
  EXPECT_EQ(*f->GetFloat("t.f64"), 1e300);
  EXPECT_EQ(*f->GetBool("t.bool"), true);
  EXPECT_EQ(*f->GetString("t.str"), std::string("h\xC3\xA9llo\0world", 12));
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<std::string>* strs, f->GetStringArray("a.str"));
  EXPECT_EQ(strs->at(3), "\xC4\xA0t");
  EXPECT_EQ(*f->GetIntArray("a.i32"), (std::vector<int64_t>{-1, 2, -3, 2147483647}));
  EXPECT_EQ(*f->GetIntArray("a.u8"), (std::vector<int64_t>{0, 1, 255}));
  EXPECT_THAT(f->GetIntArray("a.u64"), StatusIs(absl::StatusCode::kInvalidArgument,
                                                HasSubstr("element 0 value 9223372036854775808")));
  EXPECT_EQ(*f->GetFloatArray("a.f32"),
            (std::vector<double>{0.5, -1.25, static_cast<double>(3.4e38f)}));
}

struct TensorCase {
  std::string name;
  std::vector<int64_t> shape;
  uint32_t type;
  size_t bytes;
};

std::vector<TensorCase> MixedTensors() {
  return {
      {"f32.vec", {3}, 0, 12},                 // not a multiple of any alignment
      {"f16.mat", {5, 2}, 1, 20},
      {"q8_0.mat", {64, 3}, 8, 2 * 3 * 34},
      {"q4_0.3d", {32, 1, 2}, 2, 2 * 18},
      {"q4_1.4d", {32, 2, 1, 2}, 3, 4 * 20},
      {"bf16.vec", {7}, 30, 14},
      {"i8.one", {1}, 24, 1},
      {"q6_k.row", {256}, 14, 210},
      {"mxfp4.row", {32}, 39, 17},
  };
}

class GgufWriterAlignmentTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GgufWriterAlignmentTest, RoundTripsTensorsWithGgmlLayout) {
  const uint32_t alignment = GetParam();
  GgufWriter w;
  w.Set("general.architecture", Value::String("test"));
  if (alignment != 32) w.Set("general.alignment", Value::Uint32(alignment));
  const std::vector<TensorCase> cases = MixedTensors();
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_THAT(w.AddTensor(cases[i].name, cases[i].shape, cases[i].type,
                            Filler(cases[i].bytes, static_cast<uint8_t>(i))),
                IsOk());
  }
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(bytes));
  EXPECT_EQ(f->alignment(), alignment);
  EXPECT_EQ(f->data_offset() % alignment, 0u);
  EXPECT_EQ(bytes.size() % alignment, 0u) << "the last tensor must be padded too";
  ASSERT_EQ(f->tensors().size(), cases.size());
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const TensorInfo& t = f->tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, cases[i].name);
    EXPECT_EQ(t.shape, cases[i].shape);
    EXPECT_EQ(t.ggml_type, cases[i].type);
    EXPECT_EQ(t.size_bytes, cases[i].bytes);
    // ggml's reader requires data in info order, contiguous, each padded to the alignment.
    EXPECT_EQ(t.offset, expected_offset);
    expected_offset += AlignUp(t.size_bytes, alignment);
    EXPECT_EQ(t.data, reinterpret_cast<const uint8_t*>(bytes.data()) + f->data_offset() + t.offset);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(t.data), t.size_bytes),
              Filler(cases[i].bytes, static_cast<uint8_t>(i)));
    // Padding after each tensor is zeros.
    const uint64_t end = f->data_offset() + t.offset + t.size_bytes;
    const uint64_t padded = f->data_offset() + AlignUp(t.offset + t.size_bytes, alignment);
    EXPECT_EQ(bytes.substr(end, padded - end), std::string(padded - end, '\0'));
    EXPECT_EQ(f->FindTensor(t.name), &t);
  }
  EXPECT_EQ(f->data_offset() + expected_offset, bytes.size());
  EXPECT_EQ(f->FindTensor("missing"), nullptr);
}

INSTANTIATE_TEST_SUITE_P(Alignments, GgufWriterAlignmentTest, ::testing::Values(32u, 64u, 128u));

TEST(GgufWriterTest, SetReplacesAValueKeepingItsPosition) {
  GgufWriter w;
  w.Set("a", Value::Uint32(1));
  w.Set("b", Value::Uint32(2));
  w.Set("a", Value::String("one"));
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(bytes));
  ASSERT_EQ(f->metadata().size(), 2u);
  EXPECT_EQ(f->metadata()[0].first, "a");
  EXPECT_EQ(*f->GetString("a"), "one");
  EXPECT_EQ(f->metadata()[1].first, "b");
}

TEST(GgufWriterTest, FileWithoutTensorsHasNoPadding) {
  GgufWriter w;
  w.Set("k", Value::Uint8(1));
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  // magic 4 + version 4 + counts 16 + key (8 + 1) + type 4 + value 1.
  EXPECT_EQ(bytes.size(), 38u);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(bytes));
  EXPECT_EQ(f->data_offset(), 38u);
}

struct BadTensor {
  std::string label;
  std::string name;
  std::vector<int64_t> shape;
  uint32_t type;
  size_t bytes;
  std::string message;
};

TEST(GgufWriterTest, AddTensorRejectsBadTensors) {
  const std::vector<BadTensor> cases = {
      {"duplicate", "dup", {4}, 0, 16, "duplicate tensor name"},
      {"64-byte name", std::string(64, 'n'), {4}, 0, 16, "name is 64 bytes long; the limit is 63"},
      {"no dims", "t0", {}, 0, 4, "0 dims; must be 1..4"},
      {"five dims", "t5", {1, 1, 1, 1, 1}, 0, 4, "5 dims; must be 1..4"},
      {"zero dim", "tz", {4, 0}, 0, 0, "ne[1] = 0 is not positive"},
      {"negative dim", "tn", {-4}, 0, 16, "ne[0] = -4 is not positive"},
      {"overflow", "to", {1ll << 40, 1ll << 40}, 0, 4, "element count overflows"},
      {"not a block multiple", "tb", {16}, 8, 17, "ne[0] = 16 is not a multiple of the Q8_0"},
      {"wrong byte count", "tw", {4}, 0, 15, "15 data bytes given, but the shape and F32 need 16"},
      {"removed type", "tr", {32}, 4, 18, "unknown ggml type id 4"},
  };
  GgufWriter w;
  ASSERT_THAT(w.AddTensor("dup", {4}, 0, std::string(16, '\0')), IsOk());
  ASSERT_THAT(w.AddTensor(std::string(63, 'n'), {4}, 0, std::string(16, '\0')), IsOk());
  for (const BadTensor& c : cases) {
    EXPECT_THAT(w.AddTensor(c.name, c.shape, c.type, std::string(c.bytes, '\0')),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.label;
  }
  // The rejected tensors left no trace.
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(bytes));
  EXPECT_EQ(f->tensors().size(), 2u);
}

TEST(GgufWriterTest, SerializeRejectsBadMetadata) {
  Value wrong_kind = Value::Uint8(1);
  wrong_kind.data = std::string("x");
  Value out_of_range = Value::Uint8(1);
  out_of_range.data = uint64_t{300};
  Value bad_array = Value::Array(ValueType::kInt8, std::vector<int64_t>{1, -129});
  const std::vector<std::tuple<std::string, std::string, Value, std::string>> cases = {
      {"alignment INT32", "general.alignment", Value::Int32(64), "must be UINT32, not INT32"},
      {"alignment 48", "general.alignment", Value::Uint32(48), "48 is not a nonzero power of two"},
      {"alignment 0", "general.alignment", Value::Uint32(0), "0 is not a nonzero power of two"},
      {"empty key", "", Value::Uint8(1), "empty metadata key"},
      {"nested array", "n", Value::Array(ValueType::kArray, std::vector<uint64_t>{}),
       "arrays of arrays"},
      {"wrong variant", "w", wrong_kind, "holds data of another kind"},
      {"out of range", "r", out_of_range, "value out of range for UINT8"},
      {"array out of range", "ar", bad_array, "value out of range for INT8"},
  };
  for (const auto& [label, key, value, message] : cases) {
    GgufWriter w;
    w.Set(key, value);
    EXPECT_THAT(w.Serialize(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(message)))
        << label;
  }
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  return names;
}

TEST(GgufWriterTest, WriteFileIsAtomicAndOpenReadsIt) {
  const std::string dir = ::testing::TempDir() + "/gguf_writer_test_" + std::to_string(getpid());
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  const std::string path = dir + "/m.gguf";
  GgufWriter w;
  w.Set("general.name", Value::String("first"));
  ASSERT_THAT(w.AddTensor("t", {32}, 2, Filler(18, 3)), IsOk());
  ASSERT_THAT(w.WriteFile(path), IsOk());
  // Overwrite the existing file.
  w.Set("general.name", Value::String("second"));
  ASSERT_THAT(w.WriteFile(path), IsOk());
  EXPECT_THAT(ListDir(dir), ::testing::ElementsAre("m.gguf")) << "no temporary files left";

  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, GgufFile::Open(path));
  EXPECT_EQ(f->name(), path);
  EXPECT_EQ(*f->GetString("general.name"), "second");
  ASSERT_NE(f->FindTensor("t"), nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f->FindTensor("t")->data), 18),
            Filler(18, 3));
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  EXPECT_EQ(f->file_size(), bytes.size());

  EXPECT_THAT(w.WriteFile(dir + "/no/such/dir/m.gguf"), StatusIs(absl::StatusCode::kNotFound));
  // A writer that cannot serialize writes nothing.
  GgufWriter bad;
  bad.Set("general.alignment", Value::Uint32(3));
  EXPECT_THAT(bad.WriteFile(dir + "/bad.gguf"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ListDir(dir), ::testing::ElementsAre("m.gguf"));
  unlink(path.c_str());
  rmdir(dir.c_str());
}

}  // namespace
}  // namespace anvil::gguf
