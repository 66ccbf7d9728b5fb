// Exports on the default mixed-quant tiny model: the Q/K row order of notes §2.4, the PEFT
// directory (names, shapes, un-permuted lora_B, adapter_config.json), the llama.cpp LoRA GGUF
// read back with our reader, and merged GGUFs (B = 0 gives the dequantized base bitwise; a
// nonzero B gives W + scale·B·A computed here independently; F16 rounding; LlamaModel loads it).
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/core/half.h"
#include "kernels/quantize.h"
#include "model/gguf.h"
#include "model/llama_model.h"
#include "model/safetensors.h"
#include "model/tiny_model.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/random_lora.h"
#include "tests/testing/status_matchers.h"
#include "train/export.h"

namespace anvil::train {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kRank = 4;

class ExportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/train_export_test_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    ASSERT_THAT(WriteTinyLlamaGguf(TinyModelConfig{}, *dir_ + "/base.gguf"), IsOk());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  void SetUp() override {
    ANVIL_ASSERT_OK_AND_ASSIGN(base_, gguf::GgufFile::Open(*dir_ + "/base.gguf"));
  }

  // All seven modules in both layers, shapes from the base; B zero or random.
  LoraAdapters MakeAdapters(bool zero_b, uint32_t seed = 3) const {
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 0.1f);
    LoraAdapters lora;
    lora.config.rank = kRank;
    lora.config.alpha = 8.0f;
    lora.config.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
    ::anvil::testing::AddPairsShapedLike(
        *base_, 2, kRank, &lora, [&] { return normal(rng); },
        [&] { return zero_b ? 0.0f : normal(rng); });
    return lora;
  }

  std::vector<float> Dequantized(const gguf::GgufFile& f, const std::string& name) const {
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

  static std::string* dir_;
  std::unique_ptr<gguf::GgufFile> base_;
};
std::string* ExportTest::dir_ = nullptr;

TEST(RowOrderTest, MatchesTheNotesMapping) {
  // 2 heads of d = 4 rows, one column holding the GGUF row index.
  const std::vector<float> gguf = {0, 1, 2, 3, 4, 5, 6, 7};
  // HF row h*d + j*d/2 + i = GGUF row h*d + 2i + j.
  EXPECT_THAT(GgufToHfRows(gguf, 8, 1, 2), ElementsAre(0, 2, 1, 3, 4, 6, 5, 7));
  std::mt19937 rng(1);
  std::vector<float> m(24 * 5);
  for (float& x : m) x = static_cast<float>(rng());
  EXPECT_EQ(HfToGgufRows(GgufToHfRows(m, 24, 5, 3), 24, 5, 3), m);
  // The converter's HF -> GGUF permute: reshape(n_head, 2, d/2, n_in).swapaxes(1, 2).
  const std::vector<float> hf = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};  // 2 heads of 6
  EXPECT_THAT(HfToGgufRows(hf, 12, 1, 2), ElementsAre(0, 3, 1, 4, 2, 5, 6, 9, 7, 10, 8, 11));
}

TEST_F(ExportTest, PeftAdapterNamesShapesAndRowOrder) {
  const LoraAdapters lora = MakeAdapters(false);
  const std::string out = *dir_ + "/peft";
  ASSERT_THAT(WritePeftAdapter(lora, out, "HuggingFaceTB/SmolLM2-135M-Instruct", 4, 2), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(
      auto st, safetensors::SafetensorsFile::Open(out + "/adapter_model.safetensors"));
  EXPECT_EQ(*st->FindMetadata("format"), "pt");
  EXPECT_EQ(st->tensors().size(), 2 * lora.pairs.size());
  EXPECT_EQ(st->names()[0], "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(st->names()[1], "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  for (const LoraPair& p : lora.pairs) {
    SCOPED_TRACE(p.BaseName());
    const safetensors::TensorView* a = st->Find(PeftTensorName(p, true));
    const safetensors::TensorView* b = st->Find(PeftTensorName(p, false));
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_THAT(a->shape, ElementsAre(kRank, p.cols));
    EXPECT_THAT(b->shape, ElementsAre(p.rows, kRank));
    EXPECT_EQ(a->dtype, safetensors::ElementType::kF32);
    EXPECT_EQ(*st->ReadF32(a->name), p.a);  // A is never permuted
    const std::vector<float> b_hf = *st->ReadF32(b->name);
    if (p.module == LoraModule::kQ || p.module == LoraModule::kK) {
      const int64_t heads = p.module == LoraModule::kQ ? 4 : 2;
      EXPECT_NE(b_hf, p.b);
      EXPECT_EQ(HfToGgufRows(b_hf, p.rows, kRank, heads), p.b);  // permuting back: the original
    } else {
      EXPECT_EQ(b_hf, p.b);
    }
  }
  const nlohmann::json cfg =
      nlohmann::json::parse(::anvil::testing::ReadFileOrDie(out + "/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], kRank);
  EXPECT_TRUE(cfg["lora_alpha"].is_number_integer());
  EXPECT_EQ(cfg["lora_alpha"], 8);
  EXPECT_EQ(cfg["lora_dropout"], 0.0);
  EXPECT_EQ(cfg["target_modules"], nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"}));
  EXPECT_EQ(cfg["bias"], "none");
  EXPECT_EQ(cfg["use_rslora"], false);
  EXPECT_EQ(cfg["base_model_name_or_path"], "HuggingFaceTB/SmolLM2-135M-Instruct");
  EXPECT_EQ(cfg["fan_in_fan_out"], false);
  EXPECT_EQ(cfg["inference_mode"], true);
  EXPECT_EQ(cfg["init_lora_weights"], true);
  EXPECT_TRUE(cfg["modules_to_save"].is_null());

  LoraConfig odd;
  odd.alpha = 2.5f;
  odd.dropout = 0.05f;
  const nlohmann::json j = nlohmann::json::parse(PeftAdapterConfigJson(odd, "x"));
  EXPECT_EQ(j["lora_alpha"], 2.5);
  EXPECT_EQ(j["lora_dropout"], 0.05);  // printed as 0.05, not 0.0500000007
  EXPECT_EQ(j["target_modules"], nlohmann::json({"q_proj", "v_proj"}));
}

TEST_F(ExportTest, InconsistentPairsAreRefused) {
  LoraAdapters lora = MakeAdapters(false);
  lora.pairs[0].a.pop_back();
  EXPECT_THAT(WritePeftAdapter(lora, *dir_ + "/bad", "x", 4, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("blk.0.attn_q.weight")));
  lora = MakeAdapters(false);
  lora.config.targets = {LoraModule::kQ};
  EXPECT_THAT(WriteLoraGguf(lora, *base_, *dir_ + "/bad.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not in the config")));
  lora = MakeAdapters(false);
  EXPECT_THAT(WritePeftAdapter(lora, *dir_ + "/bad", "x", 3, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("heads of even size")));
  lora = MakeAdapters(false);
  LoraPair& k = lora.pairs[1];  // blk.0.attn_k: [32][64]; claim [64][32] instead
  std::swap(k.rows, k.cols);
  k.a.resize(kRank * k.cols);
  k.b.resize(k.rows * kRank);
  EXPECT_THAT(WriteLoraGguf(lora, *base_, *dir_ + "/bad.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ne = [64, 32]")));
}

TEST_F(ExportTest, LoraGgufReadsBackWithOurReader) {
  LoraAdapters lora = MakeAdapters(false);
  const std::string path = *dir_ + "/lora.gguf";
  ASSERT_THAT(WriteLoraGguf(lora, *base_, path), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, gguf::GgufFile::Open(path));
  EXPECT_EQ(*f->GetString("general.type"), "adapter");
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetString("adapter.type"), "lora");
  EXPECT_EQ(f->Find("adapter.lora.alpha")->type, gguf::ValueType::kFloat32);
  EXPECT_EQ(*f->GetFloat("adapter.lora.alpha"), 8.0);
  EXPECT_EQ(f->tensors().size(), 2 * lora.pairs.size());
  for (const LoraPair& p : lora.pairs) {
    SCOPED_TRACE(p.BaseName());
    const gguf::TensorInfo* a = f->FindTensor(p.BaseName() + ".lora_a");
    const gguf::TensorInfo* b = f->FindTensor(p.BaseName() + ".lora_b");
    const gguf::TensorInfo* w = base_->FindTensor(p.BaseName());
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_THAT(a->shape, ElementsAre(p.cols, kRank));
    EXPECT_THAT(b->shape, ElementsAre(kRank, p.rows));
    // llama.cpp's loader checks.
    EXPECT_EQ(w->shape[0], a->shape[0]);
    EXPECT_EQ(w->shape[1], b->shape[1]);
    EXPECT_EQ(a->shape[1], b->shape[0]);
    EXPECT_EQ(a->ggml_type, 0u);
    EXPECT_EQ(std::memcmp(a->data, p.a.data(), p.a.size() * 4), 0);
    EXPECT_EQ(std::memcmp(b->data, p.b.data(), p.b.size() * 4), 0);  // GGUF order as trained
  }
  // rslora: llama.cpp's alpha / r must equal our alpha / sqrt(r).
  lora.config.rslora = true;
  ASSERT_THAT(WriteLoraGguf(lora, *base_, path), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(f, gguf::GgufFile::Open(path));
  EXPECT_NEAR(*f->GetFloat("adapter.lora.alpha") / kRank, lora.config.scale(), 1e-6);
}

TEST_F(ExportTest, MergedWithZeroBIsTheDequantizedBase) {
  const LoraAdapters lora = MakeAdapters(true);
  const std::string path = *dir_ + "/merged_zero.gguf";
  ASSERT_THAT(WriteMergedGguf(*base_, &lora, {}, DType::kF32, path), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, gguf::GgufFile::Open(path));
  EXPECT_EQ(*f->GetInt("general.file_type"), 0);
  ASSERT_EQ(f->metadata().size(), base_->metadata().size());
  for (size_t i = 0; i < f->metadata().size(); ++i) {
    EXPECT_EQ(f->metadata()[i].first, base_->metadata()[i].first);
    if (f->metadata()[i].first != "general.file_type") {
      EXPECT_EQ(f->metadata()[i].second, base_->metadata()[i].second) << f->metadata()[i].first;
    }
  }
  ASSERT_EQ(f->tensors().size(), base_->tensors().size());
  for (size_t i = 0; i < f->tensors().size(); ++i) {
    const gguf::TensorInfo& t = f->tensors()[i];
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.name, base_->tensors()[i].name);
    EXPECT_EQ(t.shape, base_->tensors()[i].shape);
    EXPECT_EQ(t.ggml_type, 0u);
    const std::vector<float> want = Dequantized(*base_, t.name);
    EXPECT_EQ(std::memcmp(t.data, want.data(), want.size() * 4), 0);
  }
}

TEST_F(ExportTest, MergedAddsScaledBATimesAAndTakesReplacedTensors) {
  const LoraAdapters lora = MakeAdapters(false);
  std::vector<float> new_norm(64, 0.5f);
  std::vector<float> new_up(96 * 64);
  for (size_t i = 0; i < new_up.size(); ++i) new_up[i] = std::sin(0.01f * i);
  const absl::flat_hash_map<std::string, const std::vector<float>*> replaced = {
      {"output_norm.weight", &new_norm}, {"blk.1.ffn_up.weight", &new_up}};
  const std::string path = *dir_ + "/merged.gguf";
  ASSERT_THAT(WriteMergedGguf(*base_, &lora, replaced, DType::kF32, path), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f, gguf::GgufFile::Open(path));
  const double scale = 8.0 / kRank;
  for (const LoraPair& p : lora.pairs) {
    SCOPED_TRACE(p.BaseName());
    const std::vector<float> w =
        p.BaseName() == "blk.1.ffn_up.weight" ? new_up : Dequantized(*base_, p.BaseName());
    const std::vector<float> got = Dequantized(*f, p.BaseName());
    double worst = 0;
    for (int64_t i = 0; i < p.rows; ++i) {
      for (int64_t j = 0; j < p.cols; ++j) {
        double ba = 0;
        for (int64_t k = 0; k < kRank; ++k) ba += double{p.b[i * kRank + k]} * p.a[k * p.cols + j];
        const double want = w[i * p.cols + j] + scale * ba;
        worst = std::max(worst, std::fabs(got[i * p.cols + j] - want) / (1e-3 + std::fabs(want)));
      }
    }
    EXPECT_LT(worst, 1e-5);
  }
  EXPECT_EQ(Dequantized(*f, "output_norm.weight"), new_norm);
  EXPECT_EQ(Dequantized(*f, "token_embd.weight"), Dequantized(*base_, "token_embd.weight"));
}

TEST_F(ExportTest, MergedF16RoundsMatricesAndKeepsNormsF32) {
  const LoraAdapters lora = MakeAdapters(false);
  ASSERT_THAT(WriteMergedGguf(*base_, &lora, {}, DType::kF32, *dir_ + "/m32.gguf"), IsOk());
  ASSERT_THAT(WriteMergedGguf(*base_, &lora, {}, DType::kF16, *dir_ + "/m16.gguf"), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f32, gguf::GgufFile::Open(*dir_ + "/m32.gguf"));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto f16, gguf::GgufFile::Open(*dir_ + "/m16.gguf"));
  EXPECT_EQ(*f16->GetInt("general.file_type"), 1);
  for (const gguf::TensorInfo& t : f16->tensors()) {
    SCOPED_TRACE(t.name);
    const std::vector<float> full = Dequantized(*f32, t.name);
    if (t.shape.size() == 1) {
      EXPECT_EQ(t.ggml_type, 0u);
      EXPECT_EQ(std::memcmp(t.data, full.data(), full.size() * 4), 0);
      continue;
    }
    EXPECT_EQ(t.ggml_type, 1u);
    for (size_t i = 0; i < full.size(); ++i) {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      ASSERT_EQ(h, FloatToHalf(full[i])) << i;
    }
  }
  EXPECT_THAT(WriteMergedGguf(*base_, &lora, {}, DType::kQ8_0, *dir_ + "/q.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Q8_0")));
  std::vector<float> short_norm(3);
  EXPECT_THAT(WriteMergedGguf(*base_, nullptr, {{"output_norm.weight", &short_norm}}, DType::kF32,
                              *dir_ + "/bad.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("has 3 floats")));
  EXPECT_THAT(WriteMergedGguf(*base_, nullptr, {{"nope.weight", &short_norm}}, DType::kF32,
                              *dir_ + "/bad.gguf"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nope.weight")));
}

TEST_F(ExportTest, LlamaModelLoadsAndRunsMergedFiles) {
  const LoraAdapters lora = MakeAdapters(false);
  std::vector<std::vector<float>> logits;
  for (DType out : {DType::kF32, DType::kF16}) {
    SCOPED_TRACE(DTypeName(out));
    const std::string path = *dir_ + "/run_" + DTypeName(out) + ".gguf";
    ASSERT_THAT(WriteMergedGguf(*base_, &lora, {}, out, path), IsOk());
    ANVIL_ASSERT_OK_AND_ASSIGN(auto model, LlamaModel::Load(path));
    ContextOptions o;
    o.n_ctx = 32;
    ANVIL_ASSERT_OK_AND_ASSIGN(auto ctx, Context::Create(*model, o));
    const std::vector<int32_t> tokens = {1, 40, 7, 99, 12};
    ASSERT_THAT(ctx->Eval(tokens), IsOk());
    std::vector<float> last(ctx->logits(0), ctx->logits(0) + ctx->n_vocab());
    for (float x : last) ASSERT_TRUE(std::isfinite(x));
    logits.push_back(std::move(last));
  }
  // F16 rounding moves the logits only a little.
  double worst = 0;
  for (size_t i = 0; i < logits[0].size(); ++i) {
    worst = std::max(worst, double{std::fabs(logits[0][i] - logits[1][i])});
  }
  EXPECT_LT(worst, 0.05);
}

}  // namespace
}  // namespace anvil::train
