// The training engine against PyTorch autograd (scripts/reference/torch_golden.py, fixtures in
// tests/fixtures/train/): on the tiny all-F32 llama (tied and untied head), the logits, loss and
// every parameter gradient of a masked SFT batch (full fine-tuning), the LoRA A/B gradients, five
// AdamW steps with global-norm clipping, and the DPO loss, metrics and adapter gradients.
// Gradients must match within 1e-4 relative (to the tensor's largest element), AdamW weights
// within 1e-5 relative in L2 norm per tensor (and 1e-4 of the largest element everywhere).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/llama_model.h"
#include "model/safetensors.h"
#include "model/sha256.h"
#include "model/tiny_model.h"
#include "model/trainable_llama.h"
#include "nlohmann/json.hpp"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"
#include "train/losses.h"
#include "train/optimizer.h"

namespace anvil {
namespace {

using ::anvil::testing::IsOk;

struct Oracle {
  std::string gguf_bytes;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<safetensors::SafetensorsFile> st;
  nlohmann::json json;
};

std::unique_ptr<Oracle> LoadOracle(bool tied) {
  auto o = std::make_unique<Oracle>();
  const std::string variant = tied ? "tied" : "untied";
  auto st = safetensors::SafetensorsFile::Open(testing::FixturePath("train/torch_" + variant + ".safetensors"));
  EXPECT_THAT(st.status(), IsOk());
  if (!st.ok()) return nullptr;
  o->st = *std::move(st);
  o->json = nlohmann::json::parse(testing::ReadFileOrDie(testing::FixturePath("train/torch_golden.json")));
  TinyModelConfig cfg;
  cfg.all_f32 = true;
  cfg.tied_embeddings = tied;
  auto bytes = MakeTinyLlamaGguf(cfg);
  EXPECT_THAT(bytes.status(), IsOk());
  o->gguf_bytes = *std::move(bytes);
  // The fixture was made from exactly these bytes.
  Sha256 h;
  h.Update(o->gguf_bytes);
  EXPECT_EQ(h.FinishHex(), o->json["gguf_sha256"][variant].get<std::string>())
      << "the tiny GGUF changed since the fixtures were made: rerun scripts/reference/torch_golden.sh";
  auto f = gguf::GgufFile::FromBuffer(
      "tiny.gguf", absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(o->gguf_bytes.data()),
                                       o->gguf_bytes.size()));
  EXPECT_THAT(f.status(), IsOk());
  auto m = LlamaModel::FromFile(*std::move(f));
  EXPECT_THAT(m.status(), IsOk());
  o->model = *std::move(m);
  return o;
}

std::vector<float> F32(const Oracle& o, const std::string& name) {
  auto v = o.st->ReadF32(name);
  EXPECT_THAT(v.status(), IsOk()) << name;
  return v.ok() ? *std::move(v) : std::vector<float>{};
}

std::vector<int32_t> I32(const Oracle& o, const std::string& name) {
  auto t = o.st->Get(name);
  EXPECT_THAT(t.status(), IsOk());
  if (!t.ok()) return {};
  std::vector<int32_t> out(static_cast<size_t>((*t)->num_elements()));
  std::memcpy(out.data(), (*t)->bytes.data(), out.size() * sizeof(int32_t));
  return out;
}

// Passes when max |got - want| <= rtol * max |want| (+ a tiny floor for all-zero tensors).
::testing::AssertionResult CloseRelMax(const std::vector<float>& got, const std::vector<float>& want,
                                       double rtol, const std::string& what) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " vs " << want.size();
  }
  double scale = 0.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) scale = std::max(scale, std::fabs(double{want[i]}));
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double{got[i]} - double{want[i]});
    if (e > worst) worst = e, at = i;
  }
  if (worst <= rtol * scale + 1e-12) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": worst element " << at << " got " << got[at] << " want " << want[at]
         << " (error " << worst << " > " << rtol << " * max|want| " << scale << ")";
}

// Passes when ||got - want|| <= rtol * ||want|| (L2 over the tensor). Used for weights after
// AdamW steps: Adam divides each gradient element by its own magnitude, so an element whose
// gradient is ~1e-7 (4e-6 of the tensor's largest) carries float rounding of the gradient
// (~1e-8 absolute) into its update at ~1% — a few 1e-6 absolute on one weight — while the
// tensor as a whole agrees to ~1e-7.
::testing::AssertionResult CloseRelNorm(const std::vector<float>& got, const std::vector<float>& want,
                                        double rtol, const std::string& what) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << what << ": size " << got.size() << " vs " << want.size();
  }
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = double{got[i]} - double{want[i]};
    err += e * e;
    norm += double{want[i]} * want[i];
  }
  err = std::sqrt(err), norm = std::sqrt(norm);
  if (err <= rtol * norm) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << what << ": ||got - want|| " << err << " > " << rtol
                                       << " * ||want|| " << norm;
}

// The batch of `prefix` ("input", "dpo.chosen", ...): [B][T] tokens and targets (-100 masked).
struct FixtureBatch {
  SequenceBatch seq;
  std::vector<int32_t> targets;
};
FixtureBatch ReadBatch(const Oracle& o, const std::string& prefix) {
  FixtureBatch b;
  const std::vector<int32_t> tokens = I32(o, prefix + ".tokens");
  b.targets = I32(o, prefix + ".targets");
  const auto* t = *o.st->Get(prefix + ".tokens");
  const int64_t rows = t->shape[0], cols = t->shape[1];
  for (int64_t r = 0; r < rows; ++r) {
    b.seq.Add(std::vector<int32_t>(tokens.begin() + r * cols, tokens.begin() + (r + 1) * cols));
  }
  return b;
}

// SFT loss (mean over counted targets) and, with backward, the gradients.
double SftStep(TrainableLlama* m, const FixtureBatch& b, bool backward) {
  EXPECT_THAT(m->Forward(b.seq), IsOk());
  const int64_t n = m->n_tokens(), v = m->config().n_vocab;
  std::vector<float> ce, lse;
  EXPECT_THAT(train::RowCrossEntropy(m->exec(), m->logits(), b.targets.data(), n, v, &ce, &lse), IsOk());
  const train::CeSums s = train::SumCounted(ce, b.targets.data(), n);
  if (backward) {
    std::vector<float> dloss(static_cast<size_t>(n), static_cast<float>(1.0 / static_cast<double>(s.count)));
    EXPECT_THAT(train::CrossEntropyGrad(m->exec(), m->logits(), lse.data(), b.targets.data(),
                                        dloss.data(), n, v), IsOk());
    m->ZeroGrad();
    EXPECT_THAT(m->Backward(), IsOk());
  }
  return s.loss_sum / static_cast<double>(s.count);
}

std::unique_ptr<TrainableLlama> MakeLora(const Oracle& o) {
  TrainableOptions opt;
  opt.method = TrainMethod::kLora;
  opt.lora.rank = 4;
  opt.lora.alpha = 8;
  opt.lora.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
  auto m = TrainableLlama::Create(*o.model, opt);
  EXPECT_THAT(m.status(), IsOk());
  for (TrainParam& p : (*m)->params()) p.value = F32(o, "lora." + p.name);
  return *std::move(m);
}

class TorchOracleTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    oracle_ = LoadOracle(GetParam());
    ASSERT_NE(oracle_, nullptr);
  }
  std::unique_ptr<Oracle> oracle_;
};

TEST_P(TorchOracleTest, FullFineTuningLogitsLossAndEveryGradient) {
  const Oracle& o = *oracle_;
  TrainableOptions opt;
  opt.method = TrainMethod::kFull;
  auto m = TrainableLlama::Create(*o.model, opt);
  ASSERT_THAT(m.status(), IsOk());
  const FixtureBatch b = ReadBatch(o, "input");
  ASSERT_THAT((*m)->Forward(b.seq), IsOk());
  const int64_t nv = (*m)->n_tokens() * (*m)->config().n_vocab;
  EXPECT_TRUE(CloseRelMax(std::vector<float>((*m)->logits(), (*m)->logits() + nv),
                          F32(o, "sft.logits"), 1e-5, "logits"));
  const double loss = SftStep(m->get(), b, true);
  EXPECT_NEAR(loss, F32(o, "sft.loss")[0], 1e-5 * loss);
  for (const TrainParam& p : (*m)->params()) {
    EXPECT_TRUE(CloseRelMax(p.grad, F32(o, "grad." + p.name), 1e-4, p.name));
  }
}

TEST_P(TorchOracleTest, LoraGradients) {
  const Oracle& o = *oracle_;
  auto m = MakeLora(o);
  const double loss = SftStep(m.get(), ReadBatch(o, "input"), true);
  EXPECT_NEAR(loss, F32(o, "lora_sft.loss")[0], 1e-5 * loss);
  for (const TrainParam& p : m->params()) {
    EXPECT_TRUE(CloseRelMax(p.grad, F32(o, "lora_grad." + p.name), 1e-4, p.name));
  }
}

TEST_P(TorchOracleTest, FiveAdamWStepsWithClipping) {
  const Oracle& o = *oracle_;
  TrainableOptions opt;
  opt.method = TrainMethod::kFull;
  auto m = TrainableLlama::Create(*o.model, opt);
  ASSERT_THAT(m.status(), IsOk());
  train::AdamWOptimizer adam({.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                              .weight_decay = 0.01});
  const FixtureBatch b = ReadBatch(o, "input");
  const std::vector<float> losses = F32(o, "adamw.loss");
  const std::vector<float> norms = F32(o, "adamw.grad_norm");
  ASSERT_EQ(losses.size(), 6u);
  for (int step = 1; step <= 5; ++step) {
    const double loss = SftStep(m->get(), b, true);
    EXPECT_NEAR(loss, losses[static_cast<size_t>(step) - 1], 1e-5 * loss) << "step " << step;
    const double norm = adam.ClipGradNorm((*m)->exec(), &(*m)->params(), 1.0);
    EXPECT_NEAR(norm, norms[static_cast<size_t>(step) - 1], 1e-4 * norm) << "step " << step;
    ASSERT_THAT(adam.Step((*m)->exec(), &(*m)->params(), 1e-3), IsOk());
    for (const TrainParam& p : (*m)->params()) {
      const std::vector<float> want = F32(o, absl::StrCat("adamw.step", step, ".", p.name));
      const std::string what = absl::StrCat("step ", step, " ", p.name);
      EXPECT_TRUE(CloseRelNorm(p.value, want, 1e-5, what));
      EXPECT_TRUE(CloseRelMax(p.value, want, 1e-4, what));  // and no element far off
    }
  }
  const double last = SftStep(m->get(), b, false);
  EXPECT_NEAR(last, losses[5], 1e-5 * last);
}

TEST_P(TorchOracleTest, DpoLossMetricsAndAdapterGradients) {
  const Oracle& o = *oracle_;
  auto m = MakeLora(o);
  const FixtureBatch chosen = ReadBatch(o, "dpo.chosen"), rejected = ReadBatch(o, "dpo.rejected");
  const int64_t pairs = chosen.seq.size();
  SequenceBatch both = chosen.seq;
  for (int64_t i = 0; i < pairs; ++i) {
    both.Add(std::vector<int32_t>(rejected.seq.tokens.begin() + rejected.seq.starts[static_cast<size_t>(i)],
                                  rejected.seq.tokens.begin() + rejected.seq.starts[static_cast<size_t>(i) + 1]));
  }
  std::vector<int32_t> targets = chosen.targets;
  targets.insert(targets.end(), rejected.targets.begin(), rejected.targets.end());
  const int64_t v = m->config().n_vocab;
  const int64_t n = both.n_tokens();
  auto logps = [&](bool adapters, std::vector<float>* lse) {
    EXPECT_THAT(m->Forward(both, {.with_adapters = adapters, .record = adapters}), IsOk());
    std::vector<float> ce, l;
    EXPECT_THAT(train::RowCrossEntropy(m->exec(), m->logits(), targets.data(), n, v, &ce, &l), IsOk());
    if (lse != nullptr) *lse = l;
    return train::SequenceLogps(ce, both.starts);
  };
  const std::vector<double> ref = logps(false, nullptr);
  std::vector<float> lse;
  const std::vector<double> pol = logps(true, &lse);
  const std::vector<double> pc(pol.begin(), pol.begin() + pairs), pr(pol.begin() + pairs, pol.end());
  const std::vector<double> rc(ref.begin(), ref.begin() + pairs), rr(ref.begin() + pairs, ref.end());
  auto stats = train::DpoLoss(pc, pr, rc, rr, {.beta = 0.1}, pairs);
  ASSERT_THAT(stats.status(), IsOk());
  auto near = [&](double got, const std::string& name, size_t i = 0) {
    const double want = F32(o, name)[i];
    EXPECT_NEAR(got, want, 1e-5 * std::max(1.0, std::fabs(want))) << name << "[" << i << "]";
  };
  near(stats->loss, "dpo.loss");
  for (int64_t i = 0; i < pairs; ++i) {
    const size_t k = static_cast<size_t>(i);
    near(pc[k], "dpo.policy_logps_chosen", k);
    near(pr[k], "dpo.policy_logps_rejected", k);
    near(rc[k], "dpo.ref_logps_chosen", k);
    near(rr[k], "dpo.ref_logps_rejected", k);
  }
  near(stats->reward_accuracy, "dpo.reward_accuracy");
  near(stats->reward_margin, "dpo.reward_margin");
  // dL/dce of a row = -dL/dlogp of its sequence.
  std::vector<float> dloss(static_cast<size_t>(n), 0.0f);
  for (int64_t s = 0; s < both.size(); ++s) {
    const double d = s < pairs ? stats->d_logp_chosen[static_cast<size_t>(s)]
                               : stats->d_logp_rejected[static_cast<size_t>(s - pairs)];
    for (int64_t i = both.starts[static_cast<size_t>(s)]; i < both.starts[static_cast<size_t>(s) + 1]; ++i) {
      dloss[static_cast<size_t>(i)] = static_cast<float>(-d);
    }
  }
  ASSERT_THAT(train::CrossEntropyGrad(m->exec(), m->logits(), lse.data(), targets.data(),
                                      dloss.data(), n, v), IsOk());
  m->ZeroGrad();
  ASSERT_THAT(m->Backward(), IsOk());
  for (const TrainParam& p : m->params()) {
    EXPECT_TRUE(CloseRelMax(p.grad, F32(o, "dpo_grad." + p.name), 1e-4, p.name));
  }
}

INSTANTIATE_TEST_SUITE_P(TiedAndUntied, TorchOracleTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Tied" : "Untied"; });

}  // namespace
}  // namespace anvil
