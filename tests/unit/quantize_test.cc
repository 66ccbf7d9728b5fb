// anvil quantize against llama.cpp: the row quantizers on hand-checked blocks (zeros, the
// extreme at + and at -, rounding ties), llama-quantize's per-tensor type rules on small
// synthetic files, refused inputs (NaN/Inf, requantizing, bad shapes), and QuantizeGguf of the
// F32 SmolLM2 copy compared tensor by tensor with llama-cpp-python's llama_model_quantize
// (tests/fixtures/quantize/*.json, scripts/reference/quantize_golden.py): types, shapes, sha256
// of the bytes, changed metadata, key order; then the file runs in our runtime.
#include "kernels/quantize.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/core/half.h"
#include "model/gguf.h"
#include "model/gguf_writer.h"
#include "model/quantize.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------------------------
// Row quantizers (kernels/quantize.h; ggml's *_ref formulas, notes §6.1-6.3)

TEST(QuantizeRowTest, Q8_0AllZeroBlockHasZeroScaleAndQuants) {
  std::vector<float> x(32, 0.0f);
  BlockQ8_0 b;
  std::memset(&b, 0xAB, sizeof(b));
  QuantizeRowQ8_0(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x0000);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(b.qs[j], 0) << j;
}

TEST(QuantizeRowTest, Q8_0MaxAtPlusRoundsTiesAwayFromZero) {
  // amax = 127 -> d = 1 exactly, id = 1: q = roundf(x), halves away from zero.
  std::vector<float> x(32, 0.0f);
  x[0] = 127.0f;
  x[1] = 0.5f;     // -> 1
  x[2] = -0.5f;    // -> -1
  x[3] = 1.5f;     // -> 2
  x[4] = -63.5f;   // -> -64
  x[5] = 2.49f;    // -> 2
  x[6] = -126.6f;  // -> -127
  BlockQ8_0 b;
  QuantizeRowQ8_0(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x3C00);  // fp16 1.0
  const int8_t want[7] = {127, 1, -1, 2, -64, 2, -127};
  for (int j = 0; j < 7; ++j) EXPECT_EQ(b.qs[j], want[j]) << j;
  for (int j = 7; j < 32; ++j) EXPECT_EQ(b.qs[j], 0) << j;
}

TEST(QuantizeRowTest, Q8_0MaxAtMinus) {
  // amax = 254 (negative element) -> d = 2, id = 0.5: 3 -> 1.5 -> 2, -3 -> -2, -254 -> -127.
  std::vector<float> x(32, 0.0f);
  x[31] = -254.0f;
  x[0] = 3.0f;
  x[1] = -3.0f;
  x[2] = 1.0f;  // 0.5 -> 1
  BlockQ8_0 b;
  QuantizeRowQ8_0(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x4000);  // fp16 2.0
  EXPECT_EQ(b.qs[31], -127);
  EXPECT_EQ(b.qs[0], 2);
  EXPECT_EQ(b.qs[1], -2);
  EXPECT_EQ(b.qs[2], 1);
}

uint8_t Nibble(const uint8_t* qs, int j) {  // element j of a Q4 block
  return j < 16 ? (qs[j] & 0x0F) : (qs[j - 16] >> 4);
}

TEST(QuantizeRowTest, Q4_0AllZeroBlockIsNibbleEight) {
  // max = +0 -> d = 0 / -8 = -0 (stored as fp16 0x8000, as ggml does), id = 0 ->
  // (int8)(0 + 8.5) = 8 for every element.
  std::vector<float> x(32, 0.0f);
  BlockQ4_0 b;
  QuantizeRowQ4_0(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x8000);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b.qs[j], 0x88) << j;
}

TEST(QuantizeRowTest, Q4_0MaxAtMinusMapsToZeroAndTiesRoundUp) {
  // The largest |x| is -8 -> d = max / -8 = 1, id = 1: q = min(15, (int8)(x + 8.5)).
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;   // 0
  x[1] = 7.0f;    // 15
  x[2] = 7.4f;    // (int8)15.9 = 15
  x[3] = 0.5f;    // 9.0 -> 9 (tie rounds up)
  x[4] = -0.5f;   // 8.0 -> 8 (tie rounds up)
  x[5] = 1.49f;   // 9.99 -> 9
  x[17] = -1.5f;  // 7.0 -> 7, high nibble of byte 1
  x[20] = 7.99f;  // 16.49 -> 16 -> clamped to 15
  BlockQ4_0 b;
  QuantizeRowQ4_0(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x3C00);
  const int want[32] = {0, 15, 15, 9, 8,  9, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
                        8, 7,  8,  8, 15, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8};
  for (int j = 0; j < 32; ++j) EXPECT_EQ(Nibble(b.qs, j), want[j]) << j;
}

TEST(QuantizeRowTest, Q4_0MaxAtPlusHasNegativeScale) {
  // max = +8 -> d = -1, id = -1: x = 8 -> 0.5 -> 0; x = -7 -> 15.5 -> 15; x = 0 -> 8.
  std::vector<float> x(32, 0.0f);
  x[10] = 8.0f;
  x[11] = -7.0f;
  BlockQ4_0 b;
  QuantizeRowQ4_0(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0xBC00);  // fp16 -1.0
  EXPECT_EQ(Nibble(b.qs, 10), 0);
  EXPECT_EQ(Nibble(b.qs, 11), 15);
  EXPECT_EQ(Nibble(b.qs, 0), 8);
}

TEST(QuantizeRowTest, Q4_1MinMaxAndTies) {
  // min -1, max 14 -> d = 1, m = -1: q = min(15, (int8)((x + 1) + 0.5)).
  std::vector<float> x(32, 0.0f);  // 0 -> 1.5 -> 1
  x[0] = -1.0f;                    // 0
  x[1] = 14.0f;                    // 15
  x[2] = 0.5f;                     // 2.0 -> 2 (tie up)
  x[3] = -0.5f;                    // 1.0 -> 1
  x[16] = 13.4f;                   // 14.9 -> 14
  BlockQ4_1 b;
  QuantizeRowQ4_1(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x3C00);
  EXPECT_EQ(b.m, 0xBC00);
  EXPECT_EQ(Nibble(b.qs, 0), 0);
  EXPECT_EQ(Nibble(b.qs, 1), 15);
  EXPECT_EQ(Nibble(b.qs, 2), 2);
  EXPECT_EQ(Nibble(b.qs, 3), 1);
  EXPECT_EQ(Nibble(b.qs, 4), 1);
  EXPECT_EQ(Nibble(b.qs, 16), 14);
}

TEST(QuantizeRowTest, Q4_1AllZeroBlock) {
  std::vector<float> x(32, 0.0f);
  BlockQ4_1 b;
  QuantizeRowQ4_1(x.data(), &b, 32);
  EXPECT_EQ(b.d, 0x0000);
  EXPECT_EQ(b.m, 0x0000);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b.qs[j], 0) << j;
}

// ---------------------------------------------------------------------------------------------
// Per-tensor type rules and refused input, on small synthetic GGUFs

class QuantizeRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/quantize_rules_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // A llama-ish file: token_embd [ne0 x 8], one layer's attn_q [ne0 x ne0] and a norm [ne0],
  // optionally output.weight; F32 values i * 0.01 - 1.
  std::string Write(const std::string& name, int64_t ne0, bool with_output,
                    uint32_t matrix_type = 0) {
    gguf::GgufWriter w;
    w.Set("general.architecture", gguf::Value::String("llama"));
    w.Set("general.file_type", gguf::Value::Uint32(0));
    w.Set("llama.block_count", gguf::Value::Uint32(1));
    auto f32 = [](int64_t n) {
      std::string b(n * 4, '\0');
      for (int64_t i = 0; i < n; ++i) {
        const float v = static_cast<float>(i % 200) * 0.01f - 1.0f;
        std::memcpy(b.data() + 4 * i, &v, 4);
      }
      return b;
    };
    EXPECT_THAT(w.AddTensor("token_embd.weight", {ne0, 8}, 0, f32(ne0 * 8)), IsOk());
    EXPECT_THAT(w.AddTensor("blk.0.attn_norm.weight", {ne0}, 0, f32(ne0)), IsOk());
    if (matrix_type == 0) {
      EXPECT_THAT(w.AddTensor("blk.0.attn_q.weight", {ne0, ne0}, 0, f32(ne0 * ne0)), IsOk());
    } else {  // a Q4_1 matrix (zero bytes are a valid Q4_1 block)
      EXPECT_THAT(w.AddTensor("blk.0.attn_q.weight", {ne0, ne0}, matrix_type,
                              std::string(ne0 * ne0 / 32 * 20, '\0')),
                  IsOk());
    }
    if (with_output) {
      EXPECT_THAT(w.AddTensor("output.weight", {ne0, 8}, 0, f32(ne0 * 8)), IsOk());
    }
    const std::string path = dir_ + "/" + name;
    EXPECT_THAT(w.WriteFile(path), IsOk());
    return path;
  }

  std::map<std::string, uint32_t> Types(const std::string& path) {
    std::map<std::string, uint32_t> out;
    auto f = gguf::GgufFile::Open(path);
    EXPECT_THAT(f.status(), IsOk());
    if (!f.ok()) return out;
    for (const auto& t : (*f)->tensors()) out[t.name] = t.ggml_type;
    return out;
  }

  std::string dir_;
};

TEST_F(QuantizeRulesTest, TiedEmbeddingsGetQ8_0WhenQ6KIsImpossible) {
  // ne0 = 96: a multiple of 32 but not of 256, so llama.cpp's Q6_K falls back to Q8_0.
  const std::string in = Write("tied96.gguf", 96, false);
  const std::string out = dir_ + "/out.gguf";
  ANVIL_ASSERT_OK_AND_ASSIGN(QuantizeReport r, QuantizeGguf(in, out, QuantFileType::kQ4_0));
  auto types = Types(out);
  EXPECT_EQ(types["token_embd.weight"], 8u);       // Q8_0
  EXPECT_EQ(types["blk.0.attn_q.weight"], 2u);     // Q4_0
  EXPECT_EQ(types["blk.0.attn_norm.weight"], 0u);  // 1-D: F32, copied
  EXPECT_EQ(r.quantized, 2);
  EXPECT_EQ(r.tensors, 3);
  // --pure: the embeddings get the default type too.
  QuantizeOptions pure;
  pure.pure = true;
  ASSERT_THAT(QuantizeGguf(in, out, QuantFileType::kQ4_1, pure).status(), IsOk());
  EXPECT_EQ(Types(out)["token_embd.weight"], 3u);
  // Q8_0 files: the output rule keeps Q8_0.
  ASSERT_THAT(QuantizeGguf(in, out, QuantFileType::kQ8_0).status(), IsOk());
  EXPECT_EQ(Types(out)["token_embd.weight"], 8u);
  EXPECT_EQ(Types(out)["blk.0.attn_q.weight"], 8u);
}

TEST_F(QuantizeRulesTest, Q6KChoiceIsUnimplementedUnlessOverridden) {
  // ne0 = 256, tied: llama.cpp picks Q6_K for token_embd, which we do not write.
  const std::string in = Write("tied256.gguf", 256, false);
  const std::string out = dir_ + "/out.gguf";
  EXPECT_THAT(QuantizeGguf(in, out, QuantFileType::kQ4_0).status(),
              StatusIs(absl::StatusCode::kUnimplemented,
                       ::testing::AllOf(HasSubstr("token_embd.weight"), HasSubstr("Q6_K"))));
  EXPECT_FALSE(std::filesystem::exists(out));
  QuantizeOptions o;
  o.output_tensor_type = 8;
  ASSERT_THAT(QuantizeGguf(in, out, QuantFileType::kQ4_0, o).status(), IsOk());
  EXPECT_EQ(Types(out)["token_embd.weight"], 8u);
  // Untied: output.weight takes the rule and token_embd the default type.
  const std::string in2 = Write("untied256.gguf", 256, true);
  ASSERT_THAT(QuantizeGguf(in2, out, QuantFileType::kQ4_1, o).status(), IsOk());
  EXPECT_EQ(Types(out)["output.weight"], 8u);
  EXPECT_EQ(Types(out)["token_embd.weight"], 3u);
}

TEST_F(QuantizeRulesTest, RowNotAMultipleOf32IsRefusedNamingTheTensor) {
  const std::string in = Write("odd.gguf", 48, false);
  EXPECT_THAT(QuantizeGguf(in, dir_ + "/out.gguf", QuantFileType::kQ8_0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ne0 = 48")));
}

TEST_F(QuantizeRulesTest, RequantizingIsRefused) {
  const std::string in = Write("q41.gguf", 64, false, /*matrix_type=*/3);
  // Q4_0 target, Q4_1 source: llama.cpp refuses (allow_requantize is off).
  EXPECT_THAT(QuantizeGguf(in, dir_ + "/out.gguf", QuantFileType::kQ4_0).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("blk.0.attn_q.weight"), HasSubstr("Q4_1"))));
  // Same type: copied as it is.
  ASSERT_THAT(QuantizeGguf(in, dir_ + "/out.gguf", QuantFileType::kQ4_1).status(), IsOk());
}

TEST_F(QuantizeRulesTest, NaNAndInfAreRefusedAsLlamaCppDoes) {
  // llama.cpp's reaction to a NaN weight (fixture made by quantize_golden.py): refused, naming
  // the tensor. We refuse too, with the element.
  const nlohmann::json fx = nlohmann::json::parse(
      testing::ReadFileOrDie(testing::FixturePath("quantize/nan_input.json")));
  EXPECT_NE(fx["rc"].get<int>(), 0);
  const std::string tensor = fx["tensor"];
  bool named = false;
  for (const auto& line : fx["log_lines"]) {
    named = named || (line.get<std::string>().find("tensor '" + tensor + "' has invalid data") !=
                      std::string::npos);
  }
  EXPECT_TRUE(named) << fx.dump(1);

  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
    const std::string in = Write("nan.gguf", 64, false);
    {  // poke `bad` into element 70 of attn_q (row 1, column 6)
      auto f = gguf::GgufFile::Open(in);
      ASSERT_THAT(f.status(), IsOk());
      const uint64_t at = (*f)->data_offset() + (*f)->FindTensor("blk.0.attn_q.weight")->offset;
      f->reset();
      FILE* fp = std::fopen(in.c_str(), "r+b");
      ASSERT_NE(fp, nullptr);
      std::fseek(fp, static_cast<long>(at + 4 * 70), SEEK_SET);
      std::fwrite(&bad, 4, 1, fp);
      std::fclose(fp);
    }
    const std::string out = dir_ + "/nan_out.gguf";
    EXPECT_THAT(
        QuantizeGguf(in, out, QuantFileType::kQ8_0).status(),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 ::testing::AllOf(HasSubstr("tensor 'blk.0.attn_q.weight' has invalid data"),
                                  HasSubstr("element 70"))));
    EXPECT_FALSE(std::filesystem::exists(out));
  }
}

TEST_F(QuantizeRulesTest, BadArgumentsAreRefused) {
  EXPECT_THAT(ParseQuantFileType("q5_0"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(*ParseQuantFileType("Q4_1"), QuantFileType::kQ4_1);
  EXPECT_THAT(QuantizeGguf(dir_ + "/missing.gguf", dir_ + "/o.gguf", QuantFileType::kQ8_0).status(),
              StatusIs(absl::StatusCode::kNotFound));
  const std::string in = Write("x.gguf", 64, false);
  QuantizeOptions o;
  o.output_tensor_type = 14;  // Q6_K
  EXPECT_THAT(QuantizeGguf(in, dir_ + "/o.gguf", QuantFileType::kQ8_0, o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil
