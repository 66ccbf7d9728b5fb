// TrainableLlama on the tiny model, checked against itself where no oracle is needed: finite
// differences of the whole model's loss for every parameter tensor (full fine-tuning, LoRA with
// and without dropout, untied head), gradient checkpointing giving the same bits, QLoRA giving
// the same bits as LoRA on the dequantized base, and bad batches. The PyTorch comparison is
// train_torch_oracle_test.cc.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/llama_model.h"
#include "model/tiny_model.h"
#include "model/trainable_llama.h"
#include "tests/testing/status_matchers.h"
#include "train/export.h"
#include "train/losses.h"

namespace anvil {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;

struct Tiny {
  std::string bytes;
  std::unique_ptr<LlamaModel> model;
};

Tiny LoadTiny(const TinyModelConfig& cfg) {
  Tiny t;
  absl::StatusOr<std::string> bytes = MakeTinyLlamaGguf(cfg);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  t.bytes = *std::move(bytes);
  auto f = gguf::GgufFile::FromBuffer(
      "tiny.gguf", absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(t.bytes.data()), t.bytes.size()));
  EXPECT_TRUE(f.ok()) << f.status();
  auto m = LlamaModel::FromFile(*std::move(f));
  EXPECT_TRUE(m.ok()) << m.status();
  t.model = *std::move(m);
  return t;
}

TinyModelConfig F32Config(bool tied) {
  TinyModelConfig cfg;
  cfg.all_f32 = true;
  cfg.tied_embeddings = tied;
  return cfg;
}

// Two sequences (7 and 5 tokens) with a few masked targets.
struct Batch {
  SequenceBatch seq;
  std::vector<int32_t> targets;
};
Batch MakeBatch(int64_t vocab) {
  Batch b;
  uint64_t s = 7;
  auto next = [&] { return static_cast<int32_t>(HashCounter(99, s++) % static_cast<uint64_t>(vocab)); };
  for (int len : {7, 5}) {
    std::vector<int32_t> seq(static_cast<size_t>(len));
    for (auto& t : seq) t = next();
    for (int i = 0; i < len; ++i) b.targets.push_back(i + 1 < len && i >= 1 ? seq[static_cast<size_t>(i) + 1] : -1);
    b.seq.Add(seq);
  }
  return b;
}

// Mean cross-entropy over the counted targets; with backward, fills the gradients.
double Loss(TrainableLlama* m, const Batch& b, bool backward, const ForwardOptions& fo = {}) {
  EXPECT_THAT(m->Forward(b.seq, fo), IsOk());
  const int64_t n = m->n_tokens(), v = m->config().n_vocab;
  std::vector<float> ce, lse;
  EXPECT_THAT(train::RowCrossEntropy(m->exec(), m->logits(), b.targets.data(), n, v, &ce, &lse), IsOk());
  const train::CeSums sums = train::SumCounted(ce, b.targets.data(), n);
  if (backward) {
    std::vector<float> dloss(static_cast<size_t>(n), 1.0f / static_cast<float>(sums.count));
    EXPECT_THAT(train::CrossEntropyGrad(m->exec(), m->logits(), lse.data(), b.targets.data(),
                                        dloss.data(), n, v),
                IsOk());
    m->ZeroGrad();
    EXPECT_THAT(m->Backward(), IsOk());
  }
  return sums.loss_sum / static_cast<double>(sums.count);
}

// For each parameter tensor: the directional derivative along a random ±1 direction from
// central differences, against the gradient's dot product with it. The forward pass is float,
// so the step is large (1e-2 per element) and the check relative (2%) with a floor: the
// second-order term of a central difference is O(step^2), and float rounding of a loss ~5.7
// is ~1e-6, i.e. ~5e-5 after dividing by 2*step.
void CheckFiniteDifferences(TrainableLlama* m, const Batch& b, const ForwardOptions& fo = {}) {
  Loss(m, b, true, fo);
  const float step = 1e-2f;
  for (TrainParam& p : m->params()) {
    std::vector<float> dir(p.value.size());
    double analytic = 0.0;
    for (size_t i = 0; i < dir.size(); ++i) {
      dir[i] = (HashCounter(1234, i) & 1) ? step : -step;
      analytic += static_cast<double>(p.grad[i]) * dir[i];
    }
    const std::vector<float> saved = p.value;
    for (size_t i = 0; i < dir.size(); ++i) p.value[i] = saved[i] + dir[i];
    const double up = Loss(m, b, false, fo);
    for (size_t i = 0; i < dir.size(); ++i) p.value[i] = saved[i] - dir[i];
    const double down = Loss(m, b, false, fo);
    p.value = saved;
    const double numeric = (up - down) / 2.0;
    EXPECT_NEAR(numeric, analytic, 2e-4 + 2e-2 * std::fabs(analytic))
        << p.name << ": finite difference " << numeric << " vs gradient " << analytic;
  }
}

TEST(TrainModelTest, FullFineTuningGradientsMatchFiniteDifferences) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    Tiny t = LoadTiny(F32Config(tied));
    TrainableOptions o;
    o.method = TrainMethod::kFull;
    auto m = TrainableLlama::Create(*t.model, o);
    ASSERT_THAT(m.status(), IsOk());
    EXPECT_EQ((*m)->params().size(), static_cast<size_t>(tied ? 20 : 21));
    CheckFiniteDifferences(m->get(), MakeBatch(t.model->config().n_vocab));
  }
}

TEST(TrainModelTest, LoraGradientsMatchFiniteDifferences) {
  Tiny t = LoadTiny(F32Config(true));
  for (float dropout : {0.0f, 0.25f}) {
    SCOPED_TRACE(absl::StrCat("dropout ", dropout));
    TrainableOptions o;
    o.method = TrainMethod::kLora;
    o.lora.rank = 4;
    o.lora.alpha = 8;
    o.lora.dropout = dropout;
    o.lora.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
    auto m = TrainableLlama::Create(*t.model, o);
    ASSERT_THAT(m.status(), IsOk());
    ASSERT_EQ((*m)->params().size(), 2u * 7u * 2u);
    // B starts at zero (so A has no gradient); give it values to check both.
    for (TrainParam& p : (*m)->params()) {
      if (p.name.ends_with(".lora_b")) {
        for (size_t i = 0; i < p.value.size(); ++i) {
          p.value[i] = 0.05f * (static_cast<float>(HashCounter(5, i) % 2001) / 1000.0f - 1.0f);
        }
      }
    }
    ForwardOptions fo;
    fo.dropout_key = 77;
    CheckFiniteDifferences(m->get(), MakeBatch(t.model->config().n_vocab), fo);
  }
}

std::vector<std::vector<float>> Grads(TrainableLlama* m) {
  std::vector<std::vector<float>> g;
  for (const TrainParam& p : m->params()) g.push_back(p.grad);
  return g;
}

TEST(TrainModelTest, GradientCheckpointingGivesTheSameBits) {
  Tiny t = LoadTiny(F32Config(true));
  const Batch b = MakeBatch(t.model->config().n_vocab);
  std::vector<std::vector<float>> want;
  for (bool ckpt : {false, true}) {
    TrainableOptions o;
    o.method = TrainMethod::kFull;
    o.gradient_checkpointing = ckpt;
    auto m = TrainableLlama::Create(*t.model, o);
    ASSERT_THAT(m.status(), IsOk());
    Loss(m->get(), b, true);
    if (!ckpt) {
      want = Grads(m->get());
    } else {
      EXPECT_TRUE(Grads(m->get()) == want);
    }
  }
}

TEST(TrainModelTest, QLoraOnQuantizedBaseEqualsLoraOnDequantizedBase) {
  TinyModelConfig cfg;  // the default mix: Q4_1, Q4_0, Q8_0, F16, BF16 matrices
  cfg.layer_types = {{3, 3, 3, 3, 3, 3, 3}};  // Q4_1 matrices (ggml type 3)
  Tiny t = LoadTiny(cfg);
  const Batch b = MakeBatch(t.model->config().n_vocab);
  std::vector<std::vector<float>> want;
  for (TrainMethod method : {TrainMethod::kLora, TrainMethod::kQLora}) {
    TrainableOptions o;
    o.method = method;
    o.lora.rank = 4;
    o.lora.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
    auto m = TrainableLlama::Create(*t.model, o);
    ASSERT_THAT(m.status(), IsOk());
    for (TrainParam& p : (*m)->params()) {
      if (p.name.ends_with(".lora_b")) std::fill(p.value.begin(), p.value.end(), 0.01f);
    }
    Loss(m->get(), b, true);
    if (method == TrainMethod::kLora) {
      want = Grads(m->get());
    } else {
      EXPECT_TRUE(Grads(m->get()) == want);
    }
  }
}

// The form of the check: QLoRA on the Q4_1 file against LoRA on an F32 GGUF holding the
// dequantized base (written by the merged-model export with no adapter).
TEST(TrainModelTest, QLoraEqualsLoraOnAnF32CopyOfTheDequantizedBase) {
  TinyModelConfig cfg;
  cfg.layer_types = {{3, 3, 3, 3, 3, 3, 3}};
  Tiny q = LoadTiny(cfg);
  const std::string path = ::testing::TempDir() + "/dequantized_base.gguf";
  ASSERT_THAT(train::WriteMergedGguf(q.model->file(), nullptr, {}, DType::kF32, path), IsOk());
  auto f32 = LlamaModel::Load(path);
  ASSERT_THAT(f32.status(), IsOk());
  const Batch b = MakeBatch(q.model->config().n_vocab);
  std::vector<std::vector<float>> grads[2];
  const LlamaModel* models[2] = {q.model.get(), f32->get()};
  for (int i = 0; i < 2; ++i) {
    TrainableOptions o;
    o.method = i == 0 ? TrainMethod::kQLora : TrainMethod::kLora;
    o.lora.rank = 4;
    o.lora.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
    auto m = TrainableLlama::Create(*models[i], o);
    ASSERT_THAT(m.status(), IsOk());
    for (TrainParam& p : (*m)->params()) {
      if (p.name.ends_with(".lora_b")) std::fill(p.value.begin(), p.value.end(), 0.01f);
    }
    Loss(m->get(), b, true);
    grads[i] = Grads(m->get());
  }
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (size_t t = 0; t < grads[0].size(); ++t) {
    for (size_t e = 0; e < grads[0][t].size(); ++e) {
      ASSERT_NEAR(grads[0][t][e], grads[1][t][e], 1e-5 * std::max(1.0f, std::fabs(grads[1][t][e])))
          << "tensor " << t << " element " << e;
    }
  }
}

// Logits for the rows with a target only (what SFT does) give the same loss and gradients as
// logits for every row: the untargeted rows' dL/dlogits are zero either way. Full fine-tuning
// of a tied and an untied model (the head's own gradient included); a row outside the batch is
// InvalidArgument.
TEST(TrainModelTest, LogitRowsGiveTheSameGradients) {
  for (bool tied : {true, false}) {
    Tiny t = LoadTiny(F32Config(tied));
    const Batch b = MakeBatch(t.model->config().n_vocab);
    TrainableOptions o;
    o.method = TrainMethod::kFull;
    auto all = TrainableLlama::Create(*t.model, o);
    auto sel = TrainableLlama::Create(*t.model, o);
    ASSERT_THAT(all.status(), IsOk());
    ASSERT_THAT(sel.status(), IsOk());
    const double loss_all = Loss(all->get(), b, true);
    std::vector<int64_t> rows;
    Batch compact = b;
    compact.targets.clear();
    for (size_t i = 0; i < b.targets.size(); ++i) {
      if (b.targets[i] < 0) continue;
      rows.push_back(static_cast<int64_t>(i));
      compact.targets.push_back(b.targets[i]);
    }
    ASSERT_LT(rows.size(), b.targets.size());  // some rows are skipped
    // Loss() sizes its vectors by n_tokens(); run the compact rows through the same steps.
    ASSERT_THAT((*sel)->Forward(b.seq, {.logit_rows = &rows}), IsOk());
    ASSERT_EQ((*sel)->n_logit_rows(), static_cast<int64_t>(rows.size()));
    const int64_t r = static_cast<int64_t>(rows.size()), v = t.model->config().n_vocab;
    std::vector<float> ce, lse;
    ASSERT_THAT(train::RowCrossEntropy((*sel)->exec(), (*sel)->logits(), compact.targets.data(),
                                       r, v, &ce, &lse),
                IsOk());
    const train::CeSums sums = train::SumCounted(ce, compact.targets.data(), r);
    EXPECT_NEAR(sums.loss_sum / static_cast<double>(sums.count), loss_all, 1e-6);
    std::vector<float> dloss(static_cast<size_t>(r), 1.0f / static_cast<float>(sums.count));
    ASSERT_THAT(train::CrossEntropyGrad((*sel)->exec(), (*sel)->logits(), lse.data(),
                                        compact.targets.data(), dloss.data(), r, v),
                IsOk());
    (*sel)->ZeroGrad();
    ASSERT_THAT((*sel)->Backward(), IsOk());
    for (size_t p = 0; p < (*all)->params().size(); ++p) {
      const TrainParam& pa = (*all)->params()[p];
      const TrainParam& ps = (*sel)->params()[p];
      for (size_t i = 0; i < pa.grad.size(); ++i) {
        ASSERT_NEAR(ps.grad[i], pa.grad[i], 1e-6 + 1e-5 * std::fabs(pa.grad[i]))
            << "tied=" << tied << " " << pa.name << "[" << i << "]";
      }
    }
    std::vector<int64_t> bad = {0, b.seq.n_tokens()};
    EXPECT_THAT((*sel)->Forward(b.seq, {.logit_rows = &bad}),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

// The training forward equals the inference forward (same weights, fp32 everywhere) up to
// summation order.
TEST(TrainModelTest, ForwardMatchesInferenceContext) {
  Tiny t = LoadTiny(F32Config(false));
  const Batch b = MakeBatch(t.model->config().n_vocab);
  TrainableOptions o;
  o.method = TrainMethod::kLora;
  auto m = TrainableLlama::Create(*t.model, o);
  ASSERT_THAT(m.status(), IsOk());
  ASSERT_THAT((*m)->Forward(b.seq, {.record = false}), IsOk());
  const int64_t v = t.model->config().n_vocab;
  for (int64_t s = 0; s < b.seq.size(); ++s) {
    auto ctx = Context::Create(*t.model, {});
    ASSERT_THAT(ctx.status(), IsOk());
    const int64_t s0 = b.seq.starts[static_cast<size_t>(s)], s1 = b.seq.starts[static_cast<size_t>(s) + 1];
    std::vector<int32_t> toks(b.seq.tokens.begin() + s0, b.seq.tokens.begin() + s1);
    ASSERT_THAT((*ctx)->Eval(toks, LogitsRequest::All()), IsOk());
    for (int64_t i = 0; i < s1 - s0; ++i) {
      for (int64_t j = 0; j < v; ++j) {
        ASSERT_NEAR((*m)->logits()[(s0 + i) * v + j], (*ctx)->logits(i)[j], 1e-4)
            << "sequence " << s << " position " << i << " token " << j;
      }
    }
  }
}

TEST(TrainModelTest, BadBatchesAreRejected) {
  Tiny t = LoadTiny(F32Config(true));
  TrainableOptions o;
  o.method = TrainMethod::kLora;
  auto m = TrainableLlama::Create(*t.model, o);
  ASSERT_THAT(m.status(), IsOk());
  SequenceBatch empty;
  EXPECT_THAT((*m)->Forward(empty), StatusIs(absl::StatusCode::kInvalidArgument));
  SequenceBatch bad;
  bad.Add({1, 2, 100000});
  EXPECT_THAT((*m)->Forward(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                           ::testing::HasSubstr("token id 100000 at index 2")));
  SequenceBatch too_long;
  too_long.Add(std::vector<int32_t>(static_cast<size_t>(t.model->config().n_ctx_train) + 1, 1));
  EXPECT_THAT((*m)->Forward(too_long), StatusIs(absl::StatusCode::kInvalidArgument,
                                                ::testing::HasSubstr("training context")));
  SequenceBatch ok;
  ok.Add({1, 2, 3});
  ASSERT_THAT((*m)->Forward(ok, {.with_adapters = false, .record = false}), IsOk());
  EXPECT_THAT((*m)->Backward(), StatusIs(absl::StatusCode::kFailedPrecondition));
  o.lora.rank = 0;
  EXPECT_THAT(TrainableLlama::Create(*t.model, o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::HasSubstr("lora.rank")));
}

}  // namespace
}  // namespace anvil
