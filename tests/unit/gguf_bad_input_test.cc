// The GGUF reader against malformed input: a table of hand-built files (each one valid file with
// one thing broken) that must give exactly InvalidArgument naming the problem, plus sweeps over
// every truncation prefix and every single-byte corruption of small valid files.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/tiny_model.h"
#include "tests/testing/status_matchers.h"

namespace anvil::gguf {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::AnyOf;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const std::string& bytes,
                                                const ReadLimits& limits = {}) {
  return GgufFile::FromBuffer(
      "bad.gguf",
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), limits);
}

// Raw little-endian encoders, so a test can write what GgufWriter refuses to.
template <typename T>
std::string Le(T x) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &x, sizeof(T));
  return s;
}
std::string Str(const std::string& s) { return Le<uint64_t>(s.size()) + s; }
std::string Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  return "GGUF" + Le<uint32_t>(version) + Le<uint64_t>(n_tensors) + Le<uint64_t>(n_kv);
}
std::string KvU32(const std::string& key, uint32_t v) {
  return Str(key) + Le<uint32_t>(4) + Le<uint32_t>(v);
}
// Key, ARRAY type tag, element type and count (elements follow).
std::string KvArray(const std::string& key, uint32_t elem_type, uint64_t count) {
  return Str(key) + Le<uint32_t>(9) + Le<uint32_t>(elem_type) + Le<uint64_t>(count);
}
std::string Info(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                 uint64_t offset) {
  std::string s = Str(name) + Le<uint32_t>(static_cast<uint32_t>(ne.size()));
  for (uint64_t d : ne) s += Le<uint64_t>(d);
  return s + Le<uint32_t>(type) + Le<uint64_t>(offset);
}
// `head` (header, kv, infos) padded to `alignment`, then `data_bytes` zero bytes.
std::string WithData(std::string head, uint64_t data_bytes, uint64_t alignment = 32) {
  head.resize((head.size() + alignment - 1) / alignment * alignment, '\0');
  return head + std::string(data_bytes, '\0');
}

// The valid baseline the cases perturb: one kv, one F32 tensor of 8 elements.
std::string Valid() {
  return WithData(Header(1, 1) + KvU32("a.b", 7) + Info("t", {8}, 0, 0), 32);
}

struct BadCase {
  std::string label;
  std::string bytes;
  std::string message;  // must appear in the error
};

std::vector<BadCase> BadCases() {
  const std::string kv = KvU32("a.b", 7);
  const std::string t8 = Info("t", {8}, 0, 0);
  std::string bad_magic = Valid();
  bad_magic[3] = 'G';
  std::string swapped = Valid();
  std::memcpy(swapped.data() + 4, "\x00\x00\x00\x03", 4);
  return {
      {"bad magic", bad_magic, "magic at byte 0: not a GGUF file"},
      {"version 1", WithData(Header(1, 1, 1) + kv + t8, 32), "GGUF v1 is not supported"},
      {"version 4", WithData(Header(1, 1, 4) + kv + t8, 32), "unsupported version 4"},
      {"byte-swapped", swapped, "byte-swapped (big-endian)"},
      {"tensor count 10^12", WithData(Header(1000000000000ull, 1) + kv + t8, 32),
       "tensor count 1000000000000 exceeds the limit of 1048576"},
      {"kv count 10^12", WithData(Header(1, 1000000000000ull) + kv + t8, 32),
       "kv count 1000000000000 exceeds the limit of 1048576"},
      {"kv count past the end", WithData(Header(1, 100) + kv + t8, 32),
       "kv count at byte 16: truncated: 100 metadata pairs need at least 1400 bytes"},
      {"tensor count past the end", WithData(Header(1000, 1) + kv + t8, 32),
       "tensor count at byte 8: truncated: 1000 tensor infos need at least 32000 bytes"},
      {"key length 2^63", WithData(Header(1, 1) + Le<uint64_t>(1ull << 63) + "a.b", 32),
       "key of kv 0 at byte 24: string length 9223372036854775808 exceeds the limit"},
      {"string value length 2^63",
       WithData(Header(0, 1) + Str("k") + Le<uint32_t>(8) + Le<uint64_t>(1ull << 63), 32),
       "kv 'k' at byte 37: string length 9223372036854775808 exceeds the limit"},
      {"string value past the end",
       Header(0, 1) + Str("k") + Le<uint32_t>(8) + Le<uint64_t>(100) + "abc",
       "kv 'k' at byte 45: truncated: needs 100 bytes but only 3 remain"},
      {"empty key", WithData(Header(1, 1) + KvU32("", 7) + t8, 32), "key is empty"},
      {"duplicate key", WithData(Header(1, 2) + kv + kv + t8, 32),
       "kv 'a.b' at byte 43: duplicate key"},
      {"unknown value type", WithData(Header(1, 1) + Str("k") + Le<uint32_t>(13) + t8, 32),
       "unknown value type 13"},
      {"bool 2", WithData(Header(0, 1) + Str("k") + Le<uint32_t>(7) + "\x02", 32),
       "kv 'k' at byte 37: bool value 2 is not 0 or 1"},
      {"nested array",
       WithData(Header(0, 1) + KvArray("k", 9, 0), 32),
       "nested arrays are not supported"},
      {"unknown array element type",
       WithData(Header(0, 1) + KvArray("k", 99, 0), 32),
       "unknown array element type 99"},
      {"array count 2^40",
       WithData(Header(0, 1) + KvArray("k", 0, 1ull << 40), 32),
       "array count 1099511627776 exceeds the limit"},
      {"array count past the end",
       WithData(Header(0, 1) + KvArray("k", 4, 1000000), 32),
       "truncated: array of 1000000 UINT32 elements"},
      {"string array element length 2^63",
       Header(0, 1) + KvArray("k", 8, 1) + Le<uint64_t>(1ull << 63),
       "kv 'k' element 0 at byte 49: string length 9223372036854775808 exceeds the limit"},
      {"bool array element 2",
       Header(0, 1) + KvArray("k", 7, 2) + "\x01\x02",
       "kv 'k' element 1 at byte 50: bool value 2 is not 0 or 1"},
      {"alignment INT32",
       WithData(Header(1, 1) + Str("general.alignment") + Le<uint32_t>(5) + Le<int32_t>(64) + t8,
                32),
       "alignment must be UINT32, found INT32"},
      {"alignment 48", WithData(Header(1, 1) + KvU32("general.alignment", 48) + t8, 96),
       "alignment 48 is not a nonzero power of two"},
      {"alignment 0", WithData(Header(1, 1) + KvU32("general.alignment", 0) + t8, 32),
       "alignment 0 is not a nonzero power of two"},
      {"n_dims 0", WithData(Header(1, 1) + kv + Info("t", {}, 0, 0), 32),
       "tensor 't' n_dims at byte 52: n_dims 0 is not in 1..4"},
      {"n_dims 5", WithData(Header(1, 1) + kv + Info("t", {1, 1, 1, 1, 8}, 0, 0), 32),
       "n_dims 5 is not in 1..4"},
      {"zero dimension", WithData(Header(1, 1) + kv + Info("t", {8, 0}, 0, 0), 32),
       "tensor 't' ne[1] at byte 64: dimension is 0"},
      {"negative dimension", WithData(Header(1, 1) + kv + Info("t", {~0ull}, 0, 0), 32),
       "dimension 18446744073709551615 exceeds the limit of 1099511627776"},
      {"element count overflow",
       WithData(Header(1, 1) + kv + Info("t", {1ull << 32, 1ull << 32}, 0, 0), 32),
       "tensor 't' ne[1] at byte 64: element count overflows int64"},
      {"byte size overflow",
       WithData(Header(1, 1) + kv + Info("t", {1ull << 31, 1ull << 31}, 0, 0), 32),
       "tensor 't' type at byte 72: byte size overflows int64"},
      {"unknown tensor type", WithData(Header(1, 1) + kv + Info("t", {8}, 99, 0), 32),
       "unknown ggml type id 99"},
      {"removed tensor type", WithData(Header(1, 1) + kv + Info("t", {32}, 4, 0), 32),
       "unknown ggml type id 4"},
      {"ne[0] not a block multiple", WithData(Header(1, 1) + kv + Info("t", {16}, 8, 0), 32),
       "ne[0] = 16 is not a multiple of the Q8_0 block size 32"},
      {"64-byte tensor name",
       WithData(Header(1, 1) + kv + Info(std::string(64, 'n'), {8}, 0, 0), 32),
       "name of tensor 0 at byte 43: tensor name is 64 bytes long; the limit is 63"},
      {"duplicate tensor name",
       WithData(Header(2, 1) + kv + t8 + Info("t", {8}, 0, 32), 64),
       "tensor 't' at byte 76: duplicate tensor name"},
      {"misaligned offset", WithData(Header(1, 1) + kv + Info("t", {8}, 0, 4), 64),
       "tensor 't' offset at byte 68: offset 4 is not a multiple of the alignment 32"},
      {"offset past the end", WithData(Header(1, 1) + kv + Info("t", {8}, 0, 1024), 32),
       "tensor 't' data at byte 1120: ends at byte 1152, past the end of the file (128 bytes)"},
      {"offset overflow",
       WithData(Header(1, 1) + kv + Info("t", {8}, 0, ~uint64_t{31}), 32),
       "tensor 't' data at byte 96: offset 18446744073709551584 + size 32 overflows"},
      {"data one byte short", WithData(Header(1, 1) + kv + t8, 31),
       "ends at byte 128, past the end of the file (127 bytes)"},
      {"no data section", Header(1, 1) + kv + t8,
       "data section at byte 76: truncated: aligned start 96 is past the end of the file"},
  };
}

TEST(GgufBadInputTest, BaselineIsValid) {
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(Valid()));
  EXPECT_EQ(f->tensors().size(), 1u);
  EXPECT_EQ(f->data_offset(), 96u);
  EXPECT_EQ(*f->GetInt("a.b"), 7);
}

TEST(GgufBadInputTest, EachMalformationIsInvalidArgumentNamingTheProblem) {
  for (const BadCase& c : BadCases()) {
    EXPECT_THAT(Parse(c.bytes),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.label;
  }
}

TEST(GgufBadInputTest, MessagesHaveTheDocumentedForm) {
  std::string bad_magic = Valid();
  bad_magic[3] = 'G';
  EXPECT_THAT(Parse(bad_magic),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "bad.gguf: magic at byte 0: not a GGUF file: magic is 47 47 55 47, "
                       "expected 47 47 55 46 (\"GGUF\")"));
  EXPECT_THAT(Parse(WithData(Header(1, 1, 4) + KvU32("a.b", 7) + Info("t", {8}, 0, 0), 32)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "bad.gguf: version at byte 4: unsupported version 4 (expected 2 or 3)"));
  EXPECT_THAT(Parse(WithData(Header(1, 1) + KvU32("a.b", 7) + Info("t", {8}, 0, 1024), 32)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "bad.gguf: tensor 't' data at byte 1120: ends at byte 1152, past the end "
                       "of the file (128 bytes)"));
}

TEST(GgufBadInputTest, Version2IsAccepted) {
  ANVIL_ASSERT_OK_AND_ASSIGN(
      auto f, Parse(WithData(Header(1, 1, 2) + KvU32("a.b", 7) + Info("t", {8}, 0, 0), 32)));
  EXPECT_EQ(f->version(), 2u);
}

TEST(GgufBadInputTest, CustomLimitsAreEnforced) {
  ReadLimits limits;
  limits.max_string_bytes = 2;
  EXPECT_THAT(Parse(Valid(), limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("key of kv 0 at byte 24: string length 3 exceeds the limit")));
  limits = {};
  limits.max_dim = 4;
  EXPECT_THAT(Parse(Valid(), limits), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("dimension 8 exceeds the limit of 4")));
  limits = {};
  limits.max_tensors = 0;
  EXPECT_THAT(Parse(Valid(), limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("tensor count 1 exceeds the limit of 0")));
  limits = {};
  limits.max_array_elems = 2;
  const std::string arr = Header(0, 1) + KvArray("k", 0, 3) + "abc";
  EXPECT_THAT(Parse(arr, limits), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("array count 3 exceeds the limit of 2")));
  EXPECT_THAT(Parse(arr), IsOk());
}

// A small writer-made file with every section: kv of several types (arrays, strings), tensors.
std::string SmallWriterFile() {
  GgufWriter w;
  w.Set("general.architecture", Value::String("llama"));
  w.Set("general.alignment", Value::Uint32(64));
  w.Set("x.u8", Value::Uint8(1));
  w.Set("x.bool", Value::Bool(true));
  w.Set("x.f64", Value::Float64(2.5));
  w.Set("x.strs", Value::StringArray({"ab", "", "c"}));
  w.Set("x.i32s", Value::Int32Array({1, -2}));
  w.Set("x.bools", Value::Array(ValueType::kBool, std::vector<bool>{false, true}));
  EXPECT_THAT(w.AddTensor("q", {32, 2}, 8, std::string(68, '\x11')), IsOk());
  EXPECT_THAT(w.AddTensor("v", {3}, 0, std::string(12, '\x22')), IsOk());
  return *w.Serialize();
}

TEST(GgufBadInputTest, EveryTruncationFailsCleanlyUntilTheLastTensorIsComplete) {
  const std::string full = SmallWriterFile();
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(full));
  const TensorInfo& last = f->tensors().back();
  const uint64_t data_end = f->data_offset() + last.offset + last.size_bytes;
  ASSERT_LT(data_end, full.size());  // the trailing padding is not needed to read the data
  for (size_t n = 0; n < full.size(); ++n) {
    auto r = Parse(full.substr(0, n));
    if (n < data_end) {
      EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                              AnyOf(HasSubstr("truncated"),
                                    HasSubstr("past the end of the file"))))
          << "prefix of " << n << " bytes";
    } else {
      EXPECT_THAT(r, IsOk()) << "prefix of " << n << " bytes";
    }
  }
}

TEST(GgufBadInputTest, TinyModelTruncatedAtEverySectionBoundaryFails) {
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string full, MakeTinyLlamaGguf({}));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(full));
  std::vector<uint64_t> cuts = {0, 4, 8, 16, 24, f->data_offset() - 1, f->data_offset()};
  for (const TensorInfo& t : f->tensors()) {
    cuts.push_back(f->data_offset() + t.offset + t.size_bytes - 1);
  }
  for (uint64_t n : cuts) {
    EXPECT_THAT(Parse(full.substr(0, n)), StatusIs(absl::StatusCode::kInvalidArgument))
        << "prefix of " << n << " bytes";
  }
}

TEST(GgufBadInputTest, EverySingleByteCorruptionOfTheHeaderIsHandled) {
  const std::string full = SmallWriterFile();
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(full));
  int failures = 0;
  for (size_t i = 0; i < f->data_offset(); ++i) {
    for (uint8_t v : {uint8_t{0x00}, uint8_t{0x02}, uint8_t{0x80}, uint8_t{0xFF}}) {
      std::string bytes = full;
      if (static_cast<uint8_t>(bytes[i]) == v) continue;
      bytes[i] = static_cast<char>(v);
      auto r = Parse(bytes);
      if (!r.ok()) {
        ++failures;
        EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
            << "byte " << i << " = " << int{v} << ": " << r.status();
      }
    }
  }
  EXPECT_GT(failures, 0);
}

}  // namespace
}  // namespace anvil::gguf
