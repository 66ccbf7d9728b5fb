// anvil merge's pieces on the deterministic tiny llama: LoRA adapters written by train/export
// (llama.cpp adapter GGUF, PEFT directory) read back exactly (train/adapter_read.h), the merged
// model equal to base + scale·B·A computed here in double, refused adapters, and a merged F32/F16
// fine-tune quantized by QuantizeGguf and run by LlamaModel.
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/quantize.h"
#include "model/gguf.h"
#include "model/llama_model.h"
#include "model/quantize.h"
#include "model/tiny_model.h"
#include "tests/testing/random_lora.h"
#include "tests/testing/status_matchers.h"
#include "train/adapter_read.h"
#include "train/export.h"

namespace anvil::train {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

constexpr int64_t kRank = 4;

class MergeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/quantize_merge_" + std::to_string(getpid());
    std::filesystem::create_directories(dir_);
    ASSERT_THAT(WriteTinyLlamaGguf(TinyModelConfig{}, dir_ + "/base.gguf"), IsOk());
    ANVIL_ASSERT_OK_AND_ASSIGN(base_, gguf::GgufFile::Open(dir_ + "/base.gguf"));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // q, k, v and down in both layers, random A and B.
  LoraAdapters MakeAdapters(bool rslora) const {
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 0.1f);
    LoraAdapters lora;
    lora.config.rank = kRank;
    lora.config.alpha = 16.0f;
    lora.config.rslora = rslora;
    lora.config.targets = {LoraModule::kQ, LoraModule::kK, LoraModule::kV, LoraModule::kDown};
    auto draw = [&] { return normal(rng); };
    ::anvil::testing::AddPairsShapedLike(*base_, 2, kRank, &lora, draw, draw);
    return lora;
  }

  static std::vector<float> Floats(const gguf::GgufFile& f, const std::string& name) {
    const gguf::TensorInfo* t = f.FindTensor(name);
    const DType dt = *gguf::ToDType(t->ggml_type);
    std::vector<float> out(t->num_elements());
    const int64_t ne0 = t->shape[0];
    const int64_t row_bytes = *RowBytes(dt, ne0);
    for (int64_t r = 0; r < t->num_elements() / ne0; ++r) {
      DequantizeRow(dt, t->data + r * row_bytes, out.data() + r * ne0, ne0);
    }
    return out;
  }

  static void ExpectSamePairs(const LoraAdapters& got, const LoraAdapters& want) {
    EXPECT_FLOAT_EQ(got.config.scale(), want.config.scale());
    EXPECT_EQ(got.config.rank, want.config.rank);
    EXPECT_EQ(got.config.targets, want.config.targets);
    ASSERT_EQ(got.pairs.size(), want.pairs.size());
    for (size_t i = 0; i < want.pairs.size(); ++i) {
      SCOPED_TRACE(want.pairs[i].BaseName());
      EXPECT_EQ(got.pairs[i].BaseName(), want.pairs[i].BaseName());
      EXPECT_EQ(got.pairs[i].rows, want.pairs[i].rows);
      EXPECT_EQ(got.pairs[i].cols, want.pairs[i].cols);
      EXPECT_EQ(got.pairs[i].a, want.pairs[i].a);
      EXPECT_EQ(got.pairs[i].b, want.pairs[i].b);
    }
  }

  std::string dir_;
  std::unique_ptr<gguf::GgufFile> base_;
};

TEST_F(MergeTest, LlamaCppAdapterGgufReadsBackExactly) {
  for (bool rslora : {false, true}) {
    const LoraAdapters lora = MakeAdapters(rslora);
    const std::string path = dir_ + "/adapter.gguf";
    ASSERT_THAT(WriteLoraGguf(lora, *base_, path), IsOk());
    ANVIL_ASSERT_OK_AND_ASSIGN(LoraAdapters got, ReadAdapter(path, *base_));
    ExpectSamePairs(got, lora);
  }
}

TEST_F(MergeTest, PeftDirectoryReadsBackExactly) {
  for (bool rslora : {false, true}) {
    const LoraAdapters lora = MakeAdapters(rslora);
    const std::string dir = dir_ + "/peft";
    ASSERT_THAT(WritePeftAdapter(lora, dir, "tiny", 4, 2), IsOk());
    ANVIL_ASSERT_OK_AND_ASSIGN(LoraAdapters got, ReadAdapter(dir, *base_));
    ExpectSamePairs(got, lora);
    EXPECT_EQ(got.config.rslora, rslora);
  }
}

TEST_F(MergeTest, MergedEqualsBasePlusScaledBA) {
  const LoraAdapters lora = MakeAdapters(false);
  ASSERT_THAT(WriteLoraGguf(lora, *base_, dir_ + "/adapter.gguf"), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(LoraAdapters got, ReadAdapter(dir_ + "/adapter.gguf", *base_));
  ASSERT_THAT(WriteMergedGguf(*base_, &got, {}, DType::kF32, dir_ + "/merged.gguf"), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto merged, gguf::GgufFile::Open(dir_ + "/merged.gguf"));
  const double scale = 16.0 / kRank;
  for (const gguf::TensorInfo& t : base_->tensors()) {
    SCOPED_TRACE(t.name);
    const std::vector<float> w = Floats(*base_, t.name);
    const std::vector<float> m = Floats(*merged, t.name);
    ASSERT_EQ(m.size(), w.size());
    const LoraPair* pair = nullptr;
    for (const LoraPair& p : lora.pairs) {
      if (p.BaseName() == t.name) pair = &p;
    }
    if (pair == nullptr) {
      EXPECT_EQ(m, w);  // untouched tensors: the dequantized base, bit for bit
      continue;
    }
    double max_err = 0.0;
    for (int64_t i = 0; i < pair->rows; ++i) {
      for (int64_t j = 0; j < pair->cols; ++j) {
        double d = 0.0;
        for (int64_t k = 0; k < kRank; ++k) {
          d += static_cast<double>(pair->b[i * kRank + k]) * pair->a[k * pair->cols + j];
        }
        const double want = w[i * pair->cols + j] + scale * d;
        max_err = std::max(max_err, std::fabs(m[i * pair->cols + j] - want));
      }
    }
    // float accumulation of 4 products and one add: a few ulps of values below ~2.
    EXPECT_LT(max_err, 2e-6);
  }
}

TEST_F(MergeTest, BadAdaptersAreRefused) {
  // The base is not an adapter.
  EXPECT_THAT(ReadAdapter(dir_ + "/base.gguf", *base_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a LoRA adapter")));
  EXPECT_THAT(ReadAdapter(dir_ + "/nothing", *base_), StatusIs(absl::StatusCode::kNotFound));
  // An adapter made for a wider model.
  TinyModelConfig wide;
  wide.n_embd = 128;
  ASSERT_THAT(WriteTinyLlamaGguf(wide, dir_ + "/wide.gguf"), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto wide_base, gguf::GgufFile::Open(dir_ + "/wide.gguf"));
  LoraAdapters lora = MakeAdapters(false);
  for (LoraPair& p : lora.pairs) {
    const gguf::TensorInfo* t = wide_base->FindTensor(p.BaseName());
    p.rows = t->shape[1];
    p.cols = t->shape[0];
    p.a.assign(kRank * p.cols, 0.01f);
    p.b.assign(p.rows * kRank, 0.01f);
  }
  ASSERT_THAT(WriteLoraGguf(lora, *wide_base, dir_ + "/wide_adapter.gguf"), IsOk());
  EXPECT_THAT(ReadAdapter(dir_ + "/wide_adapter.gguf", *base_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("blk.0.attn_q.weight")));
  // A PEFT directory with DoRA.
  ASSERT_THAT(WritePeftAdapter(MakeAdapters(false), dir_ + "/dora", "tiny", 4, 2), IsOk());
  std::ofstream(dir_ + "/dora/adapter_config.json")
      << R"({"peft_type": "LORA", "r": 4, "lora_alpha": 16, "use_dora": true})";
  EXPECT_THAT(ReadAdapter(dir_ + "/dora", *base_),
              StatusIs(absl::StatusCode::kUnimplemented, HasSubstr("DoRA")));
}

TEST_F(MergeTest, MergedFineTuneQuantizesAndRuns) {
  const LoraAdapters lora = MakeAdapters(false);
  for (DType merged_type : {DType::kF32, DType::kF16}) {
    const std::string merged = dir_ + "/merged.gguf";
    ASSERT_THAT(WriteMergedGguf(*base_, &lora, {}, merged_type, merged), IsOk());
    for (QuantFileType qt : {QuantFileType::kQ8_0, QuantFileType::kQ4_0, QuantFileType::kQ4_1}) {
      SCOPED_TRACE(QuantFileTypeName(qt));
      const std::string out = dir_ + "/q.gguf";
      ANVIL_ASSERT_OK_AND_ASSIGN(QuantizeReport r, QuantizeGguf(merged, out, qt));
      EXPECT_EQ(r.tensors, static_cast<int64_t>(base_->tensors().size()));
      ANVIL_ASSERT_OK_AND_ASSIGN(auto model, LlamaModel::Load(out));
      EXPECT_EQ(*model->file().GetInt("general.file_type"), static_cast<int64_t>(qt));
      // Tied embeddings with ne0 = 64 (not a multiple of 256): Q8_0, as llama-quantize does.
      EXPECT_EQ(model->file().FindTensor("token_embd.weight")->ggml_type, 8u);
      ContextOptions o;
      o.n_ctx = 16;
      ANVIL_ASSERT_OK_AND_ASSIGN(auto ctx, Context::Create(*model, o));
      const std::vector<int32_t> prompt = {1, 2, 3};
      ASSERT_THAT(ctx->Eval(prompt), IsOk());
      for (int64_t v = 0; v < ctx->n_vocab(); ++v) ASSERT_TRUE(std::isfinite(ctx->logits(0)[v]));
    }
  }
}

}  // namespace
}  // namespace anvil::train
