// A deterministic random LoRA adapter for a model's shapes (rank 4, alpha 16, on q, v, gate and
// down of every layer, A and B uniform in [-0.25, 0.25) from std::mt19937(seed)): large enough to
// change greedy output, so tests can tell an adapted request from a base one.
#ifndef ANVIL_TESTS_TESTING_RANDOM_LORA_H_
#define ANVIL_TESTS_TESTING_RANDOM_LORA_H_

#include <cstdint>
#include <random>

#include "model/gguf.h"
#include "model/llama_config.h"
#include "model/lora.h"

namespace anvil::testing {

inline LoraAdapters RandomLora(const LlamaConfig& c, uint32_t seed) {
  LoraAdapters lora;
  lora.config.rank = 4;
  lora.config.alpha = 16;
  lora.config.targets = {LoraModule::kQ, LoraModule::kV, LoraModule::kGate, LoraModule::kDown};
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.25f, 0.25f);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    for (LoraModule m : lora.config.targets) {
      LoraPair p;
      p.layer = l;
      p.module = m;
      p.rank = 4;
      const bool q = m == LoraModule::kQ, v = m == LoraModule::kV, d = m == LoraModule::kDown;
      p.rows = q ? c.q_dim() : v ? c.kv_dim() : d ? c.n_embd : c.n_ff;  // [out]
      p.cols = d ? c.n_ff : c.n_embd;                                     // [in]
      p.a.resize(static_cast<size_t>(p.rank * p.cols));                   // [rank][in]
      p.b.resize(static_cast<size_t>(p.rows * p.rank));                   // [out][rank]
      for (float& x : p.a) x = u(rng);
      for (float& x : p.b) x = u(rng);
      lora.pairs.push_back(std::move(p));
    }
  }
  return lora;
}

// Appends one pair per (layer < n_layers, module in lora->config.targets), shaped like `base`'s
// weight for it, at rank `rank`; each pair's A then B are filled element by element with
// fill_a() / fill_b() (so draws from one generator come in pair order, A before B).
template <class FillA, class FillB>
void AddPairsShapedLike(const gguf::GgufFile& base, int64_t n_layers, int64_t rank,
                        LoraAdapters* lora, FillA fill_a, FillB fill_b) {
  for (int64_t layer = 0; layer < n_layers; ++layer) {
    for (LoraModule m : lora->config.targets) {
      LoraPair p;
      p.layer = layer;
      p.module = m;
      const gguf::TensorInfo* t = base.FindTensor(p.BaseName());
      p.rows = t->shape[1];
      p.cols = t->shape[0];
      p.rank = rank;
      p.a.resize(static_cast<size_t>(rank * p.cols));
      p.b.resize(static_cast<size_t>(p.rows * rank));
      for (float& x : p.a) x = fill_a();
      for (float& x : p.b) x = fill_b();
      lora->pairs.push_back(std::move(p));
    }
  }
}

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_RANDOM_LORA_H_
