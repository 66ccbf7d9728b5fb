// The safetensors reader and writer: round trips over every dtype, byte equality with what
// Python's `safetensors` writes, a table of malformed files that must give exactly
// InvalidArgument naming the problem, truncation/corruption sweeps, and the committed PyTorch
// fixtures (tests/fixtures/train/*.safetensors) when present.
#include "model/safetensors.h"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/core/half.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::safetensors {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> Parse(const std::string& bytes,
                                                       const ReadLimits& limits = {}) {
  return SafetensorsFile::FromBuffer("adapter.safetensors", Bytes(bytes), limits);
}

template <typename T>
std::string Raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// u64 header length + `json` + `data_bytes` zero bytes: how the bad cases are built.
std::string File(const std::string& json, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = json.size();
  std::memcpy(out.data(), &n, 8);
  return out + json + std::string(data_bytes, '\0');
}

std::string TempDir() {
  const std::string dir = ::testing::TempDir() + "/safetensors_test_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(SafetensorsTest, RoundTripEveryDtypeInInsertionOrder) {
  SafetensorsWriter w;
  ASSERT_THAT(w.SetMetadata("format", "pt"), IsOk());
  ASSERT_THAT(w.SetMetadata("note", "ünïcode \"quoted\"\n"), IsOk());
  ASSERT_THAT(w.SetMetadata("format", "pt2"), IsOk());  // replaced in place
  const std::vector<float> f32 = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-40f};
  const std::vector<uint16_t> f16 = {FloatToHalf(1.5f), FloatToHalf(-65504.0f), 0x7C00};
  const std::vector<uint16_t> bf16 = {FloatToBf16(3.0f), FloatToBf16(-0.5f)};
  const std::vector<int64_t> i64 = {-1, 1LL << 40};
  const std::vector<double> f64 = {0.1};
  ASSERT_THAT(w.Add("z.weight", ElementType::kF32, {2, 3}, Raw(f32)), IsOk());
  ASSERT_THAT(w.Add("a.half", ElementType::kF16, {3}, Raw(f16)), IsOk());
  ASSERT_THAT(w.Add("m.bf16", ElementType::kBF16, {1, 2}, Raw(bf16)), IsOk());
  ASSERT_THAT(w.Add("ids", ElementType::kI64, {2}, Raw(i64)), IsOk());
  ASSERT_THAT(w.Add("u8", ElementType::kU8, {3}, "abc"), IsOk());
  ASSERT_THAT(w.Add("flag", ElementType::kBool, {}, std::string(1, '\1')), IsOk());  // scalar
  ASSERT_THAT(w.Add("empty", ElementType::kI32, {0, 5}, ""), IsOk());
  ASSERT_THAT(w.Add("i8", ElementType::kI8, {1}, "\xff"), IsOk());
  ASSERT_THAT(w.Add("d", ElementType::kF64, {1}, Raw(f64)), IsOk());
  const std::string bytes = w.Serialize();
  EXPECT_EQ(bytes, w.Serialize());  // deterministic

  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u) << "data section must start 8-byte aligned";

  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(bytes));
  EXPECT_THAT(f->names(),
              ElementsAre("z.weight", "a.half", "m.bf16", "ids", "u8", "flag", "empty", "i8", "d"));
  EXPECT_EQ(f->metadata().at("format"), "pt2");
  EXPECT_EQ(f->metadata().at("note"), "ünïcode \"quoted\"\n");
  EXPECT_TRUE(f->header_json().starts_with("{\"__metadata__\":{\"format\":\"pt2\","));
  const TensorView* z = f->Find("z.weight");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->dtype, ElementType::kF32);
  EXPECT_THAT(z->shape, ElementsAre(2, 3));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(z->bytes.data()), z->bytes.size()), Raw(f32));
  EXPECT_THAT(f->Find("flag")->shape, ElementsAre());
  EXPECT_EQ(f->Find("flag")->num_elements(), 1);
  EXPECT_EQ(f->Find("empty")->bytes.size(), 0u);
  EXPECT_EQ(f->Find("ids")->dtype, ElementType::kI64);

  ANVIL_ASSERT_OK_AND_ASSIGN(std::vector<float> zf, f->ReadF32("z.weight"));
  for (size_t i = 0; i < f32.size(); ++i) {
    EXPECT_EQ(FloatBits(zf[i]), FloatBits(f32[i])) << i;  // bitwise, -0 and subnormals too
  }
  ANVIL_ASSERT_OK_AND_ASSIGN(std::vector<float> hf, f->ReadF32("a.half"));
  EXPECT_THAT(hf, ElementsAre(1.5f, -65504.0f, std::numeric_limits<float>::infinity()));
  ANVIL_ASSERT_OK_AND_ASSIGN(std::vector<float> bf, f->ReadF32("m.bf16"));
  EXPECT_THAT(bf, ElementsAre(3.0f, -0.5f));
  EXPECT_THAT(f->ReadF32("ids"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("I64")));
  EXPECT_THAT(f->Get("nope"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"nope\"")));

  // The same through a file.
  const std::string path = TempDir() + "/round_trip.safetensors";
  ASSERT_THAT(w.WriteFile(path), IsOk());
  EXPECT_EQ(::anvil::testing::ReadFileOrDie(path), bytes);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto g, SafetensorsFile::Open(path));
  EXPECT_EQ(g->names(), f->names());
  EXPECT_EQ(g->file_size(), bytes.size());
}

// Bytes that Python's writer produced (safetensors 0.8.0, torch 2.5.1):
//   st.save({'b': torch.arange(6, dtype=torch.float32).reshape(2, 3),
//            'a': torch.tensor([1.5, -2], dtype=torch.float16)}, metadata={'k': 'v'})
// Python orders tensors by alignment, then name; inserted in that order ours are identical.
TEST(SafetensorsTest, SameBytesAsPythonWriter) {
  const std::string header =
      R"({"__metadata__":{"k":"v"},"b":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("a":{"dtype":"F16","shape":[2],"data_offsets":[24,28]}}       )";
  const std::vector<float> b = {0, 1, 2, 3, 4, 5};
  const std::vector<uint16_t> a = {0x3E00, 0xC000};
  const std::string python = File(header, 0) + Raw(b) + Raw(a);
  ASSERT_EQ(python.size(), 180u);

  SafetensorsWriter w;
  ASSERT_THAT(w.SetMetadata("k", "v"), IsOk());
  ASSERT_THAT(w.Add("b", ElementType::kF32, {2, 3}, Raw(b)), IsOk());
  ASSERT_THAT(w.Add("a", ElementType::kF16, {2}, Raw(a)), IsOk());
  EXPECT_EQ(w.Serialize(), python);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(python));
  ANVIL_ASSERT_OK_AND_ASSIGN(std::vector<float> av, f->ReadF32("a"));
  EXPECT_THAT(av, ElementsAre(1.5f, -2.0f));
}

TEST(SafetensorsTest, WriterRefusesBadTensors) {
  SafetensorsWriter w;
  ASSERT_THAT(w.Add("x", ElementType::kF32, {2}, std::string(8, '\0')), IsOk());
  EXPECT_THAT(w.Add("x", ElementType::kF32, {2}, std::string(8, '\0')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  EXPECT_THAT(w.Add("y", ElementType::kF32, {3}, std::string(8, '\0')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs 12")));
  EXPECT_THAT(w.Add("y", ElementType::kF32, {-1}, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("negative")));
  EXPECT_THAT(w.Add("__metadata__", ElementType::kU8, {0}, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reserved")));
  EXPECT_THAT(w.Add("", ElementType::kU8, {0}, ""), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(w.Add("bad\xff", ElementType::kU8, {0}, ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
  EXPECT_THAT(w.SetMetadata("k", "\xc3"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("UTF-8")));
}

// Empty tensors may list huge dimensions before their zero: Python's reader accepts them when no
// partial byte count overflows u64, and so do we. num_elements() once overflowed int64 on these
// (UB; found by reviewing for anvil_safetensors_fuzz, caught under -fsanitize=undefined).
TEST(SafetensorsTest, EmptyTensorWithHugeDimensionsHasZeroElements) {
  for (const char* t : {
           R"("t":{"dtype":"U8","shape":[4611686018427387904,2,0],"data_offsets":[0,0]})",
           R"("t":{"dtype":"BOOL","shape":[9223372036854775807,2,0],"data_offsets":[0,0]})",
           R"("t":{"dtype":"I8","shape":[0,9223372036854775807,9223372036854775807],)"
           R"("data_offsets":[0,0]})",
           R"("t":{"dtype":"BF16","shape":[4611686018427387904,1,0],"data_offsets":[0,0]})",
       }) {
    SCOPED_TRACE(t);
    ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse(File(std::string("{") + t + "}", 0)));
    const TensorView* view = f->Find("t");
    ASSERT_NE(view, nullptr);
    EXPECT_EQ(view->num_elements(), 0);
    EXPECT_TRUE(view->bytes.empty());
    if (view->dtype == ElementType::kBF16) {
      ANVIL_ASSERT_OK_AND_ASSIGN(std::vector<float> v, f->ReadF32("t"));
      EXPECT_TRUE(v.empty());
    }
  }
  // Python refuses this one too: 2^62 * 4 overflows the byte count before the zero.
  EXPECT_THAT(
      Parse(File(R"({"t":{"dtype":"U8","shape":[4611686018427387904,4,0],"data_offsets":[0,0]}})",
                 0)),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows a 64-bit byte count")));
}

TEST(SafetensorsTest, OpenMissingFileIsNotFound) {
  EXPECT_THAT(SafetensorsFile::Open(TempDir() + "/missing.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.safetensors")));
}

struct BadCase {
  std::string label;
  std::string bytes;
  std::string message;  // must appear in the InvalidArgument message
};

std::vector<BadCase> BadCases() {
  const std::string t4 = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  std::string huge_len(8, '\0');
  const uint64_t huge = uint64_t{200} << 20;
  std::memcpy(huge_len.data(), &huge, 8);
  std::string past_end(8, '\0');
  const uint64_t past = 1000;
  std::memcpy(past_end.data(), &past, 8);
  const std::string valid = File("{" + t4 + "}", 8);
  return {
      {"empty file", "", "8-byte header length"},
      {"truncated header length", std::string(5, '\0'), "the file is 5 bytes"},
      {"header length past the file", past_end + "{}", "header length 1000 runs past the end"},
      {"header length over the cap", huge_len + "{}", "exceeds the limit of 104857600"},
      {"truncated header", valid.substr(0, 30), "runs past the end of the file (30 bytes"},
      {"bad JSON", File(R"({"t":{"dtype":)", 0), "is not valid JSON"},
      {"JSON not an object", File("[1,2]", 0), "not an object"},
      {"metadata value not a string", File(R"({"__metadata__":{"a":1}})", 0),
       "__metadata__ entry \"a\" is not a string"},
      {"tensor entry not an object", File(R"({"t":5})", 0), "tensor \"t\": entry is not"},
      {"unknown dtype", File(R"({"t":{"dtype":"F31","shape":[2],"data_offsets":[0,8]}})", 8),
       "tensor \"t\": unknown dtype \"F31\""},
      {"missing dtype", File(R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8),
       "missing string \"dtype\""},
      {"unexpected field",
       File(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8),
       "unexpected field \"x\""},
      {"shape/offset mismatch",
       File(R"({"x.lora_A.weight":{"dtype":"F32","shape":[4,64],"data_offsets":[0,400]}})", 400),
       "adapter.safetensors: tensor \"x.lora_A.weight\": data_offsets [0, 400) but shape "
       "[4, 64] F32 needs 1024 bytes"},
      {"negative dimension", File(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
       "shape entry -2 is not a non-negative integer"},
      {"fractional dimension",
       File(R"({"t":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", 8), "shape entry 1.5"},
      {"shape product overflows",
       File(R"({"t":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
       "overflows a 64-bit byte count"},
      {"offsets not a pair", File(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8),
       "two non-negative integers"},
      {"end before begin", File(R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
       "data_offsets [8, 0) end before begin"},
      {"offsets out of range",
       File(R"({"t":{"dtype":"F32","shape":[20],"data_offsets":[0,80]}})", 40),
       "data_offsets [0, 80) run past the end of the data section (40 bytes"},
      {"overlapping tensors",
       File(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
            R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
            24),
       "tensor \"b\": data_offsets [8, 24) overlap tensor \"a\" at [0, 16)"},
      {"gap between tensors",
       File(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}})",
            24),
       "leave bytes [8, 16) of the data section unused"},
      {"trailing bytes", File("{" + t4 + "}", 16), "cover only 8 (trailing bytes)"},
      {"duplicate tensor", File("{" + t4 + "," + t4 + "}", 8), "lists \"t\" twice"},
      {"nested too deep", File(R"({"t":{"shape":{"x":[1]}}})", 0), "nested deeper"},
  };
}

TEST(SafetensorsBadInputTest, EachCaseIsInvalidArgumentNamingTheProblem) {
  for (const BadCase& c : BadCases()) {
    SCOPED_TRACE(c.label);
    EXPECT_THAT(Parse(c.bytes), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

TEST(SafetensorsBadInputTest, CountLimitsApplyWhileParsing) {
  ReadLimits limits;
  limits.max_tensors = 2;
  const std::string three = File(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                                 R"("b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                                 R"("c":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})",
                                 0);
  EXPECT_THAT(Parse(three), IsOk());
  EXPECT_THAT(Parse(three, limits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than 2 tensors")));
  limits = {};
  limits.max_metadata = 1;
  EXPECT_THAT(Parse(File(R"({"__metadata__":{"a":"1","b":"2"}})", 0), limits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("__metadata__ has more")));
  limits = {};
  limits.max_dims = 1;
  EXPECT_THAT(Parse(File(R"({"t":{"dtype":"U8","shape":[1,1],"data_offsets":[0,1]}})", 1), limits),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 dimensions exceed")));
}

// Every prefix of a valid file is refused with InvalidArgument; every single-byte change either
// still parses or is InvalidArgument (never a crash or another code).
TEST(SafetensorsBadInputTest, TruncationAndCorruptionSweeps) {
  SafetensorsWriter w;
  ASSERT_THAT(w.SetMetadata("k", "v"), IsOk());
  ASSERT_THAT(w.Add("a", ElementType::kF32, {2, 2}, std::string(16, '\x3f')), IsOk());
  ASSERT_THAT(w.Add("b", ElementType::kF16, {3}, std::string(6, '\x01')), IsOk());
  const std::string good = w.Serialize();
  ASSERT_THAT(Parse(good), IsOk());
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THAT(Parse(good.substr(0, n)), StatusIs(absl::StatusCode::kInvalidArgument))
        << "prefix of " << n << " bytes";
  }
  for (size_t i = 0; i < good.size(); ++i) {
    for (uint8_t x : {0x00, 0x01, 0x20, 0x7f, 0xff}) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ x);
      auto r = Parse(bad);
      if (!r.ok()) {
        EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument)) << "byte " << i;
      }
    }
  }
}

// Files written by Python's safetensors package from PyTorch (scripts/reference/), when present.
TEST(SafetensorsFixturesTest, ReadsPyTorchFixtures) {
  const std::filesystem::path dir = ::anvil::testing::FixturePath("train");
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) GTEST_SKIP() << dir << " is absent";
  int n_files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    ++n_files;
    SCOPED_TRACE(e.path().string());
    ANVIL_ASSERT_OK_AND_ASSIGN(auto f, SafetensorsFile::Open(e.path().string()));
    for (const TensorView& t : f->tensors()) {
      if (t.dtype != ElementType::kF32 && t.dtype != ElementType::kF16 &&
          t.dtype != ElementType::kBF16) {
        continue;
      }
      ANVIL_ASSERT_OK_AND_ASSIGN(std::vector<float> v, f->ReadF32(t.name));
      EXPECT_EQ(static_cast<int64_t>(v.size()), t.num_elements()) << t.name;
    }
  }
  if (n_files == 0) GTEST_SKIP() << "no .safetensors files in " << dir;
}

}  // namespace
}  // namespace anvil::safetensors
