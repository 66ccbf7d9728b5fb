// QuantizeGguf of the F32 SmolLM2 copy against llama.cpp's quantizer (llama-cpp-python 0.3.36,
// llama_model_quantize with its default params): for Q8_0, Q4_0 and Q4_1, default and --pure
// (and the F16 copy to Q4_0),
// every tensor's name, order, ggml type, shape, byte size and sha256 equal the fixture
// (tests/fixtures/quantize/<case>.json from scripts/reference/quantize_golden.py), the metadata
// differs from the input exactly where llama.cpp's does and in llama.cpp's key order. Then each
// file runs in our runtime: the prompt's next token equals llama.cpp's on the same file, and the
// logits stay near the F32 model's. Skips (saying why) when the F32 copy is absent.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/llama_model.h"
#include "model/quantize.h"
#include "model/sampler.h"
#include "model/sha256.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"
#include "train/adapter_read.h"
#include "train/export.h"

namespace anvil {
namespace {

using ::anvil::testing::IsOk;
using Json = nlohmann::json;

std::string FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  Sha256 h;
  std::vector<char> buf(1 << 22);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.Update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return h.FinishHex();
}

std::string Hex(const uint8_t* p, size_t n) {
  static const char* const kDigits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kDigits[p[i] >> 4]);
    s.push_back(kDigits[p[i] & 15]);
  }
  return s;
}

// The last position's logits of `prompt` in `model_path`.
std::vector<float> LastLogits(const std::string& model_path, const std::vector<int32_t>& prompt) {
  auto model = LlamaModel::Load(model_path);
  EXPECT_THAT(model.status(), IsOk());
  if (!model.ok()) return {};
  ContextOptions o;
  o.n_ctx = 64;
  o.n_batch = 64;
  auto ctx = Context::Create(**model, o);
  EXPECT_THAT(ctx.status(), IsOk());
  if (!ctx.ok()) return {};
  EXPECT_THAT((*ctx)->Eval(prompt), IsOk());
  const float* z = (*ctx)->logits(0);
  return std::vector<float>(z, z + (*ctx)->n_vocab());
}

class QuantizeOracleTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(testing::F32ModelPath())) return;
    input_sha_ = new std::map<std::string, std::string>();
    dir_ = new std::string(::testing::TempDir() + "/quantize_oracle_" + std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    delete input_sha_;
    delete f32_logits_;
    dir_ = nullptr;
    input_sha_ = nullptr;
    f32_logits_ = nullptr;
  }
  static std::string* dir_;
  static std::map<std::string, std::string>* input_sha_;  // input path -> sha256, once each
  static std::vector<float>* f32_logits_;
};
std::string* QuantizeOracleTest::dir_ = nullptr;
std::map<std::string, std::string>* QuantizeOracleTest::input_sha_ = nullptr;
std::vector<float>* QuantizeOracleTest::f32_logits_ = nullptr;

TEST_P(QuantizeOracleTest, BytesMetadataAndRuntimeMatchLlamaCpp) {
  if (input_sha_ == nullptr) {
    GTEST_SKIP() << testing::F32ModelPath()
                 << " is absent (scripts/test.sh makes it: llamacpp_golden.sh --make-f32-only)";
  }
  const std::string name = GetParam();
  const Json fx =
      Json::parse(testing::ReadFileOrDie(testing::FixturePath("quantize/" + name + ".json")));
  const std::string input = testing::ModelsDir() + "/" + fx["input"]["file"].get<std::string>();
  if (!std::filesystem::exists(input)) {
    GTEST_SKIP() << input
                 << " is absent (scripts/test.sh makes it: llamacpp_golden.sh --make-copies)";
  }
  if (!input_sha_->contains(input)) (*input_sha_)[input] = FileSha256(input);
  ASSERT_EQ((*input_sha_)[input], fx["input"]["sha256"].get<std::string>())
      << input << " is not the file the fixture was made from";
  ANVIL_ASSERT_OK_AND_ASSIGN(const QuantFileType type, ParseQuantFileType(name.substr(0, 4)));
  EXPECT_EQ(static_cast<uint32_t>(type), fx["llama_ftype"].get<uint32_t>());
  QuantizeOptions options;
  options.pure = fx["pure"].get<bool>();
  const std::string out = *dir_ + "/" + name + ".gguf";
  ANVIL_ASSERT_OK_AND_ASSIGN(QuantizeReport report, QuantizeGguf(input, out, type, options));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto q, gguf::GgufFile::Open(out));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto in, gguf::GgufFile::Open(input));

  // Tensors: same order, types, shapes and bytes as llama.cpp's file.
  const Json& want = fx["tensors"];
  ASSERT_EQ(q->tensors().size(), want.size());
  int64_t byte_mismatches = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const gguf::TensorInfo& t = q->tensors()[i];
    const Json& w = want[i];
    SCOPED_TRACE(w["name"].get<std::string>());
    EXPECT_EQ(t.name, w["name"].get<std::string>());
    EXPECT_EQ(t.ggml_type, w["type"].get<uint32_t>());
    EXPECT_EQ(t.shape, w["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(t.size_bytes, w["bytes"].get<uint64_t>());
    const std::string sha =
        Sha256Hex(std::string_view(reinterpret_cast<const char*>(t.data), t.size_bytes));
    if (sha != w["sha256"].get<std::string>()) {
      ++byte_mismatches;
      EXPECT_EQ(Hex(t.data, std::min<size_t>(64, t.size_bytes)), w["head"].get<std::string>());
    }
  }
  // Every quantized byte equal to llama.cpp's. The Q4_0 caveat of notes §6.2 is covered: had
  // llama.cpp fused x*id + 8.5 into an FMA, 30,932 Q4_0 elements of this input would differ
  // (docs/OPTIMIZE.md); neither it (ggml-base, no -march) nor our kernels (-ffp-contract=off) do.
  EXPECT_EQ(byte_mismatches, 0);

  // Metadata: the keys llama.cpp changed or added, with their values; the rest as in the input;
  // llama.cpp's key order.
  const Json& md = fx["metadata"];
  std::vector<std::string> order;
  for (const auto& [key, value] : q->metadata()) order.push_back(key);
  EXPECT_EQ(order, md["key_order"].get<std::vector<std::string>>());
  for (const auto& [key, value] : q->metadata()) {
    if (md["changed_or_added"].contains(key)) {
      const Json& c = md["changed_or_added"][key];
      ASSERT_EQ(c["type"].get<std::string>(), "uint32") << key;
      EXPECT_EQ(value, gguf::Value::Uint32(c["value"].get<uint32_t>())) << key;
    } else {
      const gguf::Value* orig = in->Find(key);
      ASSERT_NE(orig, nullptr) << key;
      EXPECT_EQ(value, *orig) << key;
    }
  }
  EXPECT_TRUE(md["removed"].empty());
  EXPECT_EQ(report.output_bytes, fx["output"]["size"].get<uint64_t>());

  // Our runtime on the file: llama.cpp's next token for the prompt, logits near F32's.
  const Json& load = fx["load"];
  ASSERT_TRUE(load["loads"].get<bool>());
  const std::vector<int32_t> prompt = load["tokens"].get<std::vector<int32_t>>();
  if (f32_logits_ == nullptr) {
    f32_logits_ = new std::vector<float>(LastLogits(testing::F32ModelPath(), prompt));
  }
  const std::vector<float> z = LastLogits(out, prompt);
  ASSERT_EQ(z.size(), f32_logits_->size());
  const int32_t top = Sampler::Argmax(z.data(), static_cast<int64_t>(z.size()));
  EXPECT_EQ(top, load["argmax"].get<int32_t>());
  EXPECT_NEAR(z[top], load["max_logit"].get<double>(), 1e-4);  // measured <= 1e-6
  // Near the F32 model, as far as the type allows. The F32 copy is the dequantized Q4_1 download,
  // so Q4_1 (and Q8_0) reproduce it closely, while Q4_0's symmetric grid cannot: on this prompt
  // Q4_0 moves the top token to F32's rank 42 (pure: 9), and llama.cpp's Q4_0 file does exactly
  // the same (the argmax check above). Measured: rms 0.18 (Q8_0, Q4_1), 0.71 (Q4_1 pure), 2.55
  // (Q4_0), 2.83 (Q4_0 pure), 3.15 (Q4_0 from F16). The bounds below have headroom; perplexity
  // per type is in docs/OPTIMIZE.md.
  const std::vector<float>& f = *f32_logits_;
  double sq = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double d = static_cast<double>(z[i]) - f[i];
    sq += d * d;
    max_diff = std::max(max_diff, std::fabs(d));
  }
  const double rms = std::sqrt(sq / static_cast<double>(z.size()));
  int64_t rank_under_f32 = 0;  // F32 logits strictly above F32's logit of our top token
  for (size_t i = 0; i < z.size(); ++i) rank_under_f32 += f[i] > f[top] ? 1 : 0;
  const int32_t f32_top = Sampler::Argmax(f.data(), static_cast<int64_t>(f.size()));
  std::printf(
      "%s: %.2f MiB, logits vs F32: rms %.4f, max %.4f; top %d (F32 rank %lld; F32 top "
      "%d, margin over ours %.4f); top logit - llama.cpp's %.2e\n",
      name.c_str(), report.output_bytes / 1048576.0, rms, max_diff, top,
      static_cast<long long>(rank_under_f32), f32_top, f[f32_top] - f[top],
      z[top] - load["max_logit"].get<double>());
  const bool q4_0 = name.rfind("q4_0", 0) == 0;
  EXPECT_LE(rank_under_f32, q4_0 ? 64 : 0);
  EXPECT_LT(rms, q4_0 ? 3.5 : 1.0);
  std::filesystem::remove(out);
}

// anvil merge against llama.cpp applying the same LoRA adapter at run time on the F32 base
// (tests/fixtures/quantize/merge_lora.json): the adapter comes from the fixture's integer
// formula (exact in float), goes through the `anvil merge` path (adapter GGUF written, read back,
// merged into an F32 GGUF), and the merged model's logits for the prompt equal llama.cpp's.
TEST(MergeOracleTest, MergedModelMatchesLlamaCppRuntimeLora) {
  if (!std::filesystem::exists(testing::F32ModelPath())) {
    GTEST_SKIP() << testing::F32ModelPath() << " is absent (scripts/test.sh makes it)";
  }
  const Json fx =
      Json::parse(testing::ReadFileOrDie(testing::FixturePath("quantize/merge_lora.json")));
  ASSERT_EQ(FileSha256(testing::F32ModelPath()), fx["input"]["sha256"].get<std::string>());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto base, gguf::GgufFile::Open(testing::F32ModelPath()));
  const int64_t rank = fx["rank"].get<int64_t>();
  LoraAdapters lora;
  lora.config.rank = rank;
  lora.config.alpha = fx["alpha"].get<float>();
  lora.config.targets = {LoraModule::kQ, LoraModule::kV, LoraModule::kDown};
  for (int64_t layer = 0; layer < fx["n_layer"].get<int64_t>(); ++layer) {
    for (LoraModule m : lora.config.targets) {
      LoraPair p;
      p.layer = layer;
      p.module = m;
      p.rank = rank;
      const gguf::TensorInfo* t = base->FindTensor(p.BaseName());
      ASSERT_NE(t, nullptr);
      p.cols = t->shape[0];
      p.rows = t->shape[1];
      const int64_t mi = static_cast<int64_t>(m);
      for (int64_t k = 0; k < rank; ++k) {  // A [rank][cols]
        for (int64_t j = 0; j < p.cols; ++j) {
          p.a.push_back(static_cast<float>((layer * 7 + mi * 13 + k * 31 + j * 17) % 97 - 48) /
                        1024.0f);
        }
      }
      for (int64_t i = 0; i < p.rows; ++i) {  // B [rows][rank]
        for (int64_t k = 0; k < rank; ++k) {
          p.b.push_back(static_cast<float>((layer * 5 + mi * 11 + i * 19 + k * 23) % 89 - 44) /
                        1024.0f);
        }
      }
      lora.pairs.push_back(std::move(p));
    }
  }
  const std::string dir = ::testing::TempDir() + "/merge_oracle_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  ASSERT_THAT(train::WriteLoraGguf(lora, *base, dir + "/adapter.gguf"), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(LoraAdapters read, train::ReadAdapter(dir + "/adapter.gguf", *base));
  ASSERT_THAT(train::WriteMergedGguf(*base, &read, {}, DType::kF32, dir + "/merged.gguf"), IsOk());

  const std::vector<int32_t> prompt = fx["tokens"].get<std::vector<int32_t>>();
  const std::vector<float> z = LastLogits(dir + "/merged.gguf", prompt);
  const std::vector<float> zb = LastLogits(testing::F32ModelPath(), prompt);
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(z.empty());
  const std::vector<int32_t> ids = fx["top10_ids"].get<std::vector<int32_t>>();
  const std::vector<double> logits = fx["top10_logits"].get<std::vector<double>>();
  double max_diff = 0.0, change = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(z[ids[i]] - logits[i]));
  }
  for (size_t v = 0; v < z.size(); ++v) change = std::max(change, std::fabs(double{z[v]} - zb[v]));
  std::printf(
      "merge: top-10 logits vs llama.cpp runtime LoRA: max diff %.2e; change vs base %.4f "
      "(llama.cpp %.4f)\n",
      max_diff, change, fx["max_abs_change_vs_base"].get<double>());
  EXPECT_EQ(Sampler::Argmax(z.data(), static_cast<int64_t>(z.size())), ids[0]);
  // llama.cpp adds scale·B(Ax) to Wx; the merged file computes (W + scale·BA)x: float rounding
  // only (measured 7.4e-6).
  EXPECT_LT(max_diff, 1e-4);
  EXPECT_NEAR(change, fx["max_abs_change_vs_base"].get<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantizeOracleTest,
                         ::testing::Values("q8_0", "q8_0_pure", "q4_0", "q4_0_pure", "q4_1",
                                           "q4_1_pure", "q4_0_from_f16"));

}  // namespace
}  // namespace anvil
