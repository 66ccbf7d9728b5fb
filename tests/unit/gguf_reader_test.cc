// GgufFile on real and generated files: the SmolLM2-135M Q4_1 model (metadata cross-checked with
// values printed by an independent Python reader), the deterministic tiny llama (stable bytes,
// expected metadata, tensor set and values), Open errors, typed-getter errors, DebugString and
// the ggml type table.
#include "model/gguf.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quantize.h"
#include "model/gguf_writer.h"
#include "model/tiny_model.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::gguf {
namespace {

using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<GgufFile>> Parse(const std::string& name,
                                                const std::string& bytes) {
  return GgufFile::FromBuffer(name, absl::MakeConstSpan(
      reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

// ---------------------------------------------------------------------------------------------
// The real model.

TEST(GgufReaderRealModelTest, SmolLM2Q41HasTheExpectedLayout) {
  const std::string path = anvil::testing::Q41ModelPath();
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0)
      << "missing " << path << ": run scripts/fetch-model.sh (scripts/test.sh does) or set "
      << "ANVIL_MODELS to the directory holding SmolLM2-135M-Instruct.Q4_1.gguf";
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, GgufFile::Open(path));
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->file_size(), static_cast<uint64_t>(st.st_size));
  EXPECT_EQ(f->data_offset() % 32, 0u);
  EXPECT_EQ(f->metadata().size(), 33u);
  EXPECT_EQ(f->tensors().size(), 272u);

  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetInt("general.file_type"), 3);
  EXPECT_EQ(f->Find("general.file_type")->type, ValueType::kUint32);
  EXPECT_EQ(*f->GetInt("llama.block_count"), 30);
  EXPECT_EQ(*f->GetInt("llama.embedding_length"), 576);
  EXPECT_EQ(*f->GetInt("llama.attention.head_count"), 9);
  EXPECT_EQ(*f->GetInt("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(*f->GetFloat("llama.rope.freq_base"), 100000.0);
  EXPECT_EQ(*f->GetString("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(*f->GetString("tokenizer.ggml.pre"), "smollm");
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<std::string>* tokens,
                             f->GetStringArray("tokenizer.ggml.tokens"));
  EXPECT_EQ(tokens->size(), 49152u);
  EXPECT_EQ(tokens->at(1), "<|im_start|>");
  EXPECT_EQ(tokens->at(2), "<|im_end|>");
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<std::string>* merges,
                             f->GetStringArray("tokenizer.ggml.merges"));
  EXPECT_EQ(merges->size(), 48900u);
  EXPECT_EQ(*f->GetInt("tokenizer.ggml.bos_token_id"), 1);
  EXPECT_EQ(*f->GetInt("tokenizer.ggml.eos_token_id"), 2);
  EXPECT_EQ(f->Find("tokenizer.ggml.token_type")->elem_type, ValueType::kInt32);
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<int64_t> types,
                             f->GetIntArray("tokenizer.ggml.token_type"));
  EXPECT_EQ(types.size(), 49152u);
  EXPECT_EQ(types[2], 3);  // <|im_end|> is CONTROL

  const TensorInfo* embd = f->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->ggml_type, 8u);
  EXPECT_THAT(embd->shape, ElementsAre(576, 49152));
  EXPECT_EQ(embd->size_bytes, 576u / 32 * 34 * 49152);
  const TensorInfo* q = f->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->ggml_type, 3u);
  EXPECT_THAT(q->shape, ElementsAre(576, 576));
  const TensorInfo* norm = f->FindTensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->ggml_type, 0u);
  EXPECT_THAT(norm->shape, ElementsAre(576));
  EXPECT_EQ(f->FindTensor("output.weight"), nullptr) << "SmolLM2 ties its embeddings";
  for (const TensorInfo& t : f->tensors()) {
    EXPECT_LE(f->data_offset() + t.offset + t.size_bytes, f->file_size()) << t.name;
  }
  // Norm weights are ordinary finite floats near 1 (checks that data pointers are right).
  float first;
  std::memcpy(&first, norm->data, sizeof(first));
  EXPECT_TRUE(std::isfinite(first) && first > 0.0f && first < 10.0f) << first;
}

// ---------------------------------------------------------------------------------------------
// Open and the getters.

TEST(GgufReaderTest, OpenMissingFileIsNotFound) {
  EXPECT_THAT(GgufFile::Open("/nonexistent/dir/x.gguf"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/dir/x.gguf")));
}

TEST(GgufReaderTest, OpenDirectoryOrEmptyFileIsInvalidArgument) {
  EXPECT_THAT(GgufFile::Open(::testing::TempDir()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
  const std::string empty = ::testing::TempDir() + "/gguf_reader_empty_" +
                            std::to_string(getpid()) + ".gguf";
  std::ofstream(empty).close();
  EXPECT_THAT(GgufFile::Open(empty),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(empty + ": magic at byte 0: truncated")));
  unlink(empty.c_str());
}

TEST(GgufReaderTest, GettersReportMissingKeysAndWrongTypes) {
  GgufWriter w;
  w.Set("s", Value::String("x"));
  w.Set("u", Value::Uint32(7));
  w.Set("f", Value::Float32(0.5f));
  w.Set("b", Value::Bool(false));
  w.Set("ai", Value::Int32Array({1}));
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, w.Serialize());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse("g.gguf", bytes));
  EXPECT_THAT(f->GetInt("nope"), StatusIs(absl::StatusCode::kNotFound,
                                          HasSubstr("g.gguf: metadata key 'nope' not found")));
  EXPECT_THAT(f->GetStringArray("nope"), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_FALSE(f->Has("nope"));
  EXPECT_TRUE(f->Has("s"));
  EXPECT_THAT(f->GetInt("s"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("g.gguf: metadata key 's' has type STRING, expected an integer")));
  EXPECT_THAT(f->GetInt("b"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f->GetFloat("u"), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("type UINT32, expected FLOAT32 or FLOAT64")));
  EXPECT_THAT(f->GetBool("u"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f->GetString("f"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f->GetStringArray("ai"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("type ARRAY[INT32], expected ARRAY[STRING]")));
  EXPECT_THAT(f->GetIntArray("u"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(f->GetFloatArray("ai"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(*f->GetFloat("f"), 0.5);
  EXPECT_EQ(*f->GetBool("b"), false);
}

TEST(GgufReaderTest, DebugStringIsShortAndReadable) {
  EXPECT_EQ(Value::Uint32(7).DebugString(), "7");
  EXPECT_EQ(Value::Int8(-3).DebugString(), "-3");
  EXPECT_EQ(Value::Bool(true).DebugString(), "true");
  EXPECT_EQ(Value::Float32(0.5f).DebugString(), "0.5");
  EXPECT_EQ(Value::String("a\nb").DebugString(), "\"a\\nb\"");
  EXPECT_EQ(Value::String("abcdef").DebugString(8, 3), "\"abc...\"");
  EXPECT_EQ(Value::Int32Array({1, 2, 3}).DebugString(), "[1, 2, 3]");
  EXPECT_EQ(Value::Int32Array({1, 2, 3, 4, 5}).DebugString(2), "[1, 2, ... (5 items)]");
  EXPECT_EQ(Value::StringArray({"x", "y"}).DebugString(1), "[\"x\", ... (2 items)]");
  EXPECT_EQ(Value::StringArray({}).DebugString(), "[]");
  EXPECT_EQ(Value::Int32Array({1, 2}).size(), 2u);
  EXPECT_EQ(Value::String("abc").size(), 1u);
}

TEST(GgufReaderTest, GgmlTypeTableMatchesGgml) {
  struct Row {
    uint32_t id;
    const char* name;
    int64_t elems, bytes;
  };
  for (const Row& r : std::vector<Row>{{0, "F32", 1, 4},       {1, "F16", 1, 2},
                                       {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
                                       {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},
                                       {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
                                       {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110},
                                       {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
                                       {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},
                                       {24, "I8", 1, 1},       {25, "I16", 1, 2},
                                       {26, "I32", 1, 4},      {27, "I64", 1, 8},
                                       {28, "F64", 1, 8},      {30, "BF16", 1, 2},
                                       {34, "TQ1_0", 256, 54}, {35, "TQ2_0", 256, 66},
                                       {39, "MXFP4", 32, 17}}) {
    const GgmlTypeInfo* t = FindGgmlType(r.id);
    ASSERT_NE(t, nullptr) << r.id;
    EXPECT_STREQ(t->name, r.name);
    EXPECT_EQ(t->block_elems, r.elems) << r.name;
    EXPECT_EQ(t->block_bytes, r.bytes) << r.name;
  }
  for (uint32_t removed : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 1000u}) {
    EXPECT_EQ(FindGgmlType(removed), nullptr) << removed;
  }
  for (DType d : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0,
                  DType::kQ4_1}) {
    EXPECT_EQ(ToDType(FromDType(d)), d);
    EXPECT_EQ(FindGgmlType(FromDType(d))->block_bytes, BlockBytes(d));
  }
  EXPECT_EQ(ToDType(14), std::nullopt);  // Q6_K: readable, not computable
}

// ---------------------------------------------------------------------------------------------
// The tiny model.

TEST(TinyModelTest, IsDeterministicAndSeedDependent) {
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string a, MakeTinyLlamaGguf({}));
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string b, MakeTinyLlamaGguf({}));
  EXPECT_TRUE(a == b) << "two generations differ";
  TinyModelConfig other;
  other.seed = 43;
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string c, MakeTinyLlamaGguf(other));
  EXPECT_EQ(a.size(), c.size());
  EXPECT_FALSE(a == c);
}

TEST(TinyModelTest, HasTheExpectedMetadataAndVocabulary) {
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, MakeTinyLlamaGguf({}));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse("tiny.gguf", bytes));
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetInt("llama.embedding_length"), 64);
  EXPECT_EQ(*f->GetInt("llama.block_count"), 2);
  EXPECT_EQ(*f->GetInt("llama.attention.head_count"), 4);
  EXPECT_EQ(*f->GetInt("llama.attention.head_count_kv"), 2);
  EXPECT_EQ(*f->GetInt("llama.feed_forward_length"), 96);
  EXPECT_EQ(*f->GetInt("llama.context_length"), 256);
  EXPECT_EQ(*f->GetInt("llama.rope.dimension_count"), 16);
  EXPECT_EQ(*f->GetFloat("llama.rope.freq_base"), 10000.0);
  EXPECT_EQ(*f->GetFloat("llama.attention.layer_norm_rms_epsilon"), static_cast<double>(1e-5f));
  // llama.cpp checks these types exactly (notes §1.3).
  for (const char* k : {"llama.block_count", "llama.embedding_length", "general.file_type",
                        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"}) {
    EXPECT_EQ(f->Find(k)->type, ValueType::kUint32) << k;
  }
  EXPECT_EQ(f->Find("llama.rope.freq_base")->type, ValueType::kFloat32);
  EXPECT_EQ(f->Find("tokenizer.ggml.add_bos_token")->type, ValueType::kBool);
  EXPECT_EQ(f->Find("tokenizer.ggml.token_type")->elem_type, ValueType::kInt32);

  const int n_vocab = 256 + kTinyMaxMerges + 3;
  EXPECT_EQ(*f->GetInt("llama.vocab_size"), n_vocab);
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<std::string>* tokens,
                             f->GetStringArray("tokenizer.ggml.tokens"));
  ASSERT_EQ(tokens->size(), static_cast<size_t>(n_vocab));
  EXPECT_EQ(tokens->at(0), "\xC4\x80");    // byte 0x00 -> U+0100
  EXPECT_EQ(tokens->at(' '), "\xC4\xA0");  // space -> U+0120 'Ġ'
  EXPECT_EQ(tokens->at('a'), "a");
  EXPECT_EQ(tokens->at(256), "\xC4\xA0t");  // first merge result "Ġt"
  EXPECT_EQ(tokens->at(n_vocab - 3), "<|endoftext|>");
  EXPECT_EQ(tokens->at(n_vocab - 2), "<|im_start|>");
  EXPECT_EQ(tokens->at(n_vocab - 1), "<|im_end|>");
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<std::string>* merges,
                             f->GetStringArray("tokenizer.ggml.merges"));
  ASSERT_EQ(merges->size(), static_cast<size_t>(kTinyMaxMerges));
  EXPECT_EQ(merges->at(0), "\xC4\xA0 t");
  EXPECT_EQ(merges->at(7), "\xC4\xA0t he");
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::vector<int64_t> types,
                             f->GetIntArray("tokenizer.ggml.token_type"));
  EXPECT_EQ(types[0], 1);
  EXPECT_EQ(types[n_vocab - 1], 3);
  EXPECT_EQ(*f->GetInt("tokenizer.ggml.bos_token_id"), n_vocab - 2);
  EXPECT_EQ(*f->GetInt("tokenizer.ggml.eos_token_id"), n_vocab - 1);
  EXPECT_EQ(*f->GetBool("tokenizer.ggml.add_bos_token"), false);
  EXPECT_EQ(*f->GetString("tokenizer.ggml.pre"), "smollm");
  EXPECT_THAT(*f->GetString("tokenizer.chat_template"), HasSubstr("<|im_start|>"));
}

TEST(TinyModelTest, HasTheDefaultTensorTypeMix) {
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string bytes, MakeTinyLlamaGguf({}));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse("tiny.gguf", bytes));
  ASSERT_EQ(f->tensors().size(), 1u + 9 * 2 + 1);
  const int64_t n_vocab = 256 + kTinyMaxMerges + 3;
  const std::vector<std::tuple<std::string, uint32_t, std::vector<int64_t>>> expected = {
      {"token_embd.weight", 8, {64, n_vocab}},  {"blk.0.attn_norm.weight", 0, {64}},
      {"blk.0.attn_q.weight", 3, {64, 64}},     {"blk.0.attn_k.weight", 3, {64, 32}},
      {"blk.0.attn_v.weight", 1, {64, 32}},     {"blk.0.attn_output.weight", 3, {64, 64}},
      {"blk.0.ffn_norm.weight", 0, {64}},       {"blk.0.ffn_gate.weight", 3, {64, 96}},
      {"blk.0.ffn_up.weight", 3, {64, 96}},     {"blk.0.ffn_down.weight", 3, {96, 64}},
      {"blk.1.attn_q.weight", 2, {64, 64}},     {"blk.1.attn_k.weight", 2, {64, 32}},
      {"blk.1.attn_v.weight", 2, {64, 32}},     {"blk.1.attn_output.weight", 30, {64, 64}},
      {"blk.1.ffn_gate.weight", 2, {64, 96}},   {"blk.1.ffn_up.weight", 2, {64, 96}},
      {"blk.1.ffn_down.weight", 8, {96, 64}},   {"output_norm.weight", 0, {64}},
  };
  for (const auto& [name, type, shape] : expected) {
    const TensorInfo* t = f->FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->ggml_type, type) << name;
    EXPECT_EQ(t->shape, shape) << name;
  }
  EXPECT_EQ(f->FindTensor("output.weight"), nullptr);

  TinyModelConfig untied;
  untied.tied_embeddings = false;
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string ubytes, MakeTinyLlamaGguf(untied));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto u, Parse("untied.gguf", ubytes));
  ASSERT_NE(u->FindTensor("output.weight"), nullptr);
  EXPECT_EQ(u->FindTensor("output.weight")->ggml_type, 0u);
  EXPECT_EQ(u->tensors().size(), 21u);
}

// Dequantized row-major values of a tensor.
std::vector<float> Dequantize(const TensorInfo& t) {
  const DType dt = *ToDType(t.ggml_type);
  const int64_t ne0 = t.shape[0];
  const int64_t rows = t.num_elements() / ne0;
  const int64_t row_bytes = *RowBytes(dt, ne0);
  std::vector<float> out(t.num_elements());
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(dt, t.data + r * row_bytes, out.data() + r * ne0, ne0);
  }
  return out;
}

TEST(TinyModelTest, QuantizedWeightsApproximateTheF32Model) {
  TinyModelConfig f32_cfg;
  f32_cfg.all_f32 = true;
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string qbytes, MakeTinyLlamaGguf({}));
  ANVIL_ASSERT_OK_AND_ASSIGN(const std::string fbytes, MakeTinyLlamaGguf(f32_cfg));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto q, Parse("q.gguf", qbytes));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, Parse("f.gguf", fbytes));
  EXPECT_EQ(*f->GetInt("general.file_type"), 0);
  ASSERT_EQ(q->tensors().size(), f->tensors().size());
  for (const TensorInfo& ft : f->tensors()) {
    SCOPED_TRACE(ft.name);
    ASSERT_EQ(ft.ggml_type, 0u);
    const TensorInfo* qt = q->FindTensor(ft.name);
    ASSERT_NE(qt, nullptr);
    const std::vector<float> exact = Dequantize(ft);
    const std::vector<float> approx = Dequantize(*qt);
    ASSERT_EQ(exact.size(), approx.size());
    float amax = 0.0f, worst = 0.0f;
    for (size_t i = 0; i < exact.size(); ++i) {
      amax = std::max(amax, std::fabs(exact[i]));
      worst = std::max(worst, std::fabs(exact[i] - approx[i]));
    }
    // Weights are bounded by half their scale; norms lie in [0.9, 1.1).
    if (ft.shape.size() == 1) {
      EXPECT_GE(*std::min_element(exact.begin(), exact.end()), 0.9f);
      EXPECT_LT(amax, 1.1f);
    }
    // Per-type error bounds relative to the largest magnitude (4-bit: 1/15 of the block range
    // over 2, plus fp16 rounding of the scales).
    const uint32_t type = qt->ggml_type;
    const float bound = type == 0 ? 0.0f
                        : type == 1 ? amax * 1e-3f
                        : type == 30 ? amax * 4e-3f
                        : type == 8 ? amax / 127.0f
                                    : amax * 2.0f / 15.0f;
    EXPECT_LE(worst, bound) << "type " << type << " amax " << amax;
    EXPECT_GT(amax, 0.0f);
  }
}

TEST(TinyModelTest, RejectsInconsistentConfigs) {
  TinyModelConfig odd_heads;
  odd_heads.n_head = 3;  // 64 % 3 != 0
  EXPECT_THAT(MakeTinyLlamaGguf(odd_heads),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of n_head")));
  TinyModelConfig gqa;
  gqa.n_head_kv = 3;
  EXPECT_THAT(MakeTinyLlamaGguf(gqa),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of n_head_kv")));
  TinyModelConfig narrow;
  narrow.n_embd = 48;  // quantized rows of 48 are not whole blocks
  narrow.n_head = 3;
  narrow.n_head_kv = 1;
  EXPECT_THAT(MakeTinyLlamaGguf(narrow),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("token_embd.weight")));
  narrow.all_f32 = true;  // ...but F32 is fine
  EXPECT_THAT(MakeTinyLlamaGguf(narrow), ::anvil::testing::IsOk());
  TinyModelConfig k_quant;
  k_quant.token_embd_type = 14;  // Q6_K: not generated
  EXPECT_THAT(MakeTinyLlamaGguf(k_quant),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not supported")));
  TinyModelConfig merges;
  merges.n_merges = kTinyMaxMerges + 1;
  EXPECT_THAT(MakeTinyLlamaGguf(merges), StatusIs(absl::StatusCode::kInvalidArgument));
  merges.n_merges = 5;
  ANVIL_ASSERT_OK_AND_ASSIGN(const TinyVocab v, MakeTinyVocab(merges));
  EXPECT_EQ(v.tokens.size(), 256u + 5 + 3);
  EXPECT_EQ(v.im_start_id, 262);
}

}  // namespace
}  // namespace anvil::gguf
