// TrainableLlama set-up: the parameter list for full fine-tuning or LoRA, LoRA initialization
// (PEFT's: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0), the fp32 views of the frozen base, and the
// small pieces shared by the forward (train_forward.cc) and backward (train_backward.cc) passes.
#include "model/trainable_llama.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/quantize.h"

namespace anvil {
namespace {

// The matrix of `module` in a layer.
const WeightMatrix& ModuleMatrix(const LayerWeights& lw, LoraModule m) {
  switch (m) {
    case LoraModule::kQ: return lw.wq;
    case LoraModule::kK: return lw.wk;
    case LoraModule::kV: return lw.wv;
    case LoraModule::kO: return lw.wo;
    case LoraModule::kGate: return lw.w_gate;
    case LoraModule::kUp: return lw.w_up;
    case LoraModule::kDown: return lw.w_down;
  }
  return lw.wq;
}

// Dequantizes a whole [rows][cols] matrix into `out` (rows split over the pool).
void DequantizeMatrix(ThreadPool* pool, const WeightMatrix& m, float* out) {
  const int64_t row_bytes = *RowBytes(m.type, m.cols);  // validated when the weights were bound
  const auto* src = static_cast<const uint8_t*>(m.data);
  ParallelFor(pool, m.rows, 16, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) DequantizeRow(m.type, src + r * row_bytes, out + r * m.cols, m.cols);
  });
}

std::vector<float> DequantizeMatrix(ThreadPool* pool, const WeightMatrix& m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  DequantizeMatrix(pool, m, out.data());
  return out;
}

TrainParam MakeParam(std::string name, std::vector<int64_t> shape, std::vector<float> value,
                     bool decay) {
  TrainParam p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.value = std::move(value);
  p.grad.assign(p.value.size(), 0.0f);
  p.decay = decay;
  return p;
}

}  // namespace

const char* TrainMethodName(TrainMethod m) {
  switch (m) {
    case TrainMethod::kFull: return "full";
    case TrainMethod::kLora: return "lora";
    case TrainMethod::kQLora: return "qlora";
  }
  return "?";
}

uint64_t HashCounter(uint64_t key, uint64_t index) {
  uint64_t z = key + 0x9e3779b97f4a7c15ULL * (index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void LoraDropout(uint64_t key, uint64_t stream, float p, const float* x, float* y, int64_t n) {
  const uint64_t k = HashCounter(key, stream);
  const float inv_keep = 1.0f / (1.0f - p);
  // keep when a uniform draw in [0, 1) with 24 bits is >= p
  const auto threshold = static_cast<uint64_t>(static_cast<double>(p) * 16777216.0);
  for (int64_t i = 0; i < n; ++i) {
    const bool keep = (HashCounter(k, static_cast<uint64_t>(i)) >> 40) >= threshold;
    y[i] = keep ? x[i] * inv_keep : 0.0f;
  }
}

void SequenceBatch::Add(const std::vector<int32_t>& seq) {
  if (starts.empty()) starts.push_back(0);
  tokens.insert(tokens.end(), seq.begin(), seq.end());
  starts.push_back(static_cast<int64_t>(tokens.size()));
}

TrainableLlama::TrainableLlama(const LlamaModel& base, const TrainableOptions& options)
    : base_(base), config_(base.config()), options_(options) {}

TrainableLlama::~TrainableLlama() = default;

absl::StatusOr<std::unique_ptr<TrainableLlama>> TrainableLlama::Create(
    const LlamaModel& base, const TrainableOptions& options) {
  if (options.threads < 1) return absl::InvalidArgumentError("train: threads must be >= 1");
  if (options.method != TrainMethod::kFull) {
    const LoraConfig& l = options.lora;
    if (l.rank < 1) return absl::InvalidArgumentError("lora.rank: must be >= 1");
    if (!(l.dropout >= 0.0f && l.dropout < 1.0f)) {
      return absl::InvalidArgumentError("lora.dropout: must be in [0, 1)");
    }
    if (l.targets.empty()) return absl::InvalidArgumentError("lora.targets: no module to adapt");
  }
  std::unique_ptr<TrainableLlama> m(new TrainableLlama(base, options));
  ANVIL_RETURN_IF_ERROR(m->Init());
  return m;
}

absl::Status TrainableLlama::Init() {
  pool_ = std::make_unique<ThreadPool>(options_.threads);
  exec_.backend = options_.backend;
  exec_.pool = pool_.get();
  const LlamaWeights& w = base_.weights();
  const LlamaConfig& c = config_;
  layer_params_.assign(static_cast<size_t>(c.n_layer), LayerParams{});

  if (options_.method == TrainMethod::kFull) {
    auto add = [&](std::string name, std::vector<int64_t> shape, std::vector<float> v, bool decay) {
      params_.push_back(MakeParam(std::move(name), std::move(shape), std::move(v), decay));
      return static_cast<int>(params_.size()) - 1;
    };
    auto add_matrix = [&](const WeightMatrix& m) {
      return add(m.name, {m.rows, m.cols}, DequantizeMatrix(pool_.get(), m), true);
    };
    auto add_vector = [&](std::string name, const float* v) {
      return add(std::move(name), {c.n_embd}, std::vector<float>(v, v + c.n_embd), false);
    };
    token_embd_ = add_matrix(w.token_embd);
    if (!c.tied_embeddings) output_ = add_matrix(w.output);
    output_norm_ = add_vector("output_norm.weight", w.output_norm);
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      LayerParams& lp = layer_params_[static_cast<size_t>(l)];
      const std::string b = absl::StrCat("blk.", l, ".");
      lp.attn_norm = add_vector(b + "attn_norm.weight", lw.attn_norm);
      for (int i = 0; i < 4; ++i) lp.w[i] = add_matrix(ModuleMatrix(lw, kAllLoraModules[i]));
      lp.ffn_norm = add_vector(b + "ffn_norm.weight", lw.ffn_norm);
      for (int i = 4; i < 7; ++i) lp.w[i] = add_matrix(ModuleMatrix(lw, kAllLoraModules[i]));
    }
    return absl::OkStatus();
  }

  // LoRA / QLoRA: pairs for the targets, in layer order then module order.
  const LoraConfig& lc = options_.lora;
  bool target[7] = {};
  for (LoraModule t : lc.targets) target[static_cast<int>(t)] = true;
  uint64_t init_index = 0;
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    LayerParams& lp = layer_params_[static_cast<size_t>(l)];
    for (int i = 0; i < 7; ++i) {
      if (!target[i]) continue;
      const WeightMatrix& m = ModuleMatrix(lw, kAllLoraModules[i]);
      std::vector<float> a(static_cast<size_t>(lc.rank * m.cols));
      const double bound = 1.0 / std::sqrt(static_cast<double>(m.cols));
      for (float& x : a) {
        const double u = static_cast<double>(HashCounter(options_.seed, init_index++) >> 11) *
                         0x1.0p-53;
        x = static_cast<float>((2.0 * u - 1.0) * bound);
      }
      params_.push_back(MakeParam(m.name + ".lora_a", {lc.rank, m.cols}, std::move(a), true));
      lp.lora_a[i] = static_cast<int>(params_.size()) - 1;
      params_.push_back(MakeParam(m.name + ".lora_b", {m.rows, lc.rank},
                                  std::vector<float>(static_cast<size_t>(m.rows * lc.rank)), true));
      lp.lora_b[i] = static_cast<int>(params_.size()) - 1;
    }
  }
  if (options_.method == TrainMethod::kLora) {
    base_f32_.resize(static_cast<size_t>(c.n_layer));
    for (int64_t l = 0; l < c.n_layer; ++l) {
      const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
      auto& mats = base_f32_[static_cast<size_t>(l)];
      mats.resize(7);
      for (int i = 0; i < 7; ++i) {
        const WeightMatrix& m = ModuleMatrix(lw, kAllLoraModules[i]);
        if (m.type != DType::kF32) mats[static_cast<size_t>(i)] = DequantizeMatrix(pool_.get(), m);
      }
    }
    if (w.token_embd.type != DType::kF32) embd_f32_ = DequantizeMatrix(pool_.get(), w.token_embd);
    if (!c.tied_embeddings && w.output.type != DType::kF32) {
      output_f32_ = DequantizeMatrix(pool_.get(), w.output);
    }
  }
  return absl::OkStatus();
}

TrainParam* TrainableLlama::FindParam(const std::string& name) {
  for (TrainParam& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

void TrainableLlama::ZeroGrad() {
  // Split over the pool: full fine-tuning clears 540 MB of gradients every step.
  for (TrainParam& p : params_) {
    float* g = p.grad.data();
    ParallelFor(pool_.get(), static_cast<int64_t>(p.grad.size()), int64_t{1} << 16,
                [g](int64_t b, int64_t e, int) { std::memset(g + b, 0, sizeof(float) * (e - b)); });
  }
}

const float* TrainableLlama::Weight(const WeightMatrix& m, const TrainParam* full,
                                    std::vector<float>* scratch) {
  if (full != nullptr) return full->value.data();
  if (m.type == DType::kF32) return static_cast<const float*>(m.data);
  if (options_.method == TrainMethod::kLora) {
    if (&m == &base_.weights().token_embd) return embd_f32_.data();
    if (&m == &base_.weights().output) return output_f32_.data();
    for (size_t l = 0; l < base_f32_.size(); ++l) {
      const LayerWeights& lw = base_.weights().layers[l];
      for (int i = 0; i < 7; ++i) {
        if (&ModuleMatrix(lw, kAllLoraModules[i]) == &m) return base_f32_[l][static_cast<size_t>(i)].data();
      }
    }
  }
  // kQLora: dequantize now; the scratch lives until the next call.
  scratch->resize(static_cast<size_t>(m.rows * m.cols));
  DequantizeMatrix(pool_.get(), m, scratch->data());
  return scratch->data();
}

TrainableLlama::Linear TrainableLlama::MakeLinear(int64_t layer, LoraModule module,
                                                  bool with_adapters) {
  const int i = static_cast<int>(module);
  const LayerParams& lp = layer_params_[static_cast<size_t>(layer)];
  const WeightMatrix& m = ModuleMatrix(base_.weights().layers[static_cast<size_t>(layer)], module);
  Linear lin;
  lin.base = &m;
  lin.rows = m.rows;
  lin.cols = m.cols;
  lin.stream = static_cast<uint64_t>(layer) * 7 + static_cast<uint64_t>(i);
  if (lp.w[i] >= 0) lin.full = &params_[static_cast<size_t>(lp.w[i])];
  if (with_adapters && lp.lora_a[i] >= 0) {
    TrainParam& a = params_[static_cast<size_t>(lp.lora_a[i])];
    TrainParam& b = params_[static_cast<size_t>(lp.lora_b[i])];
    lin.a = a.value.data();
    lin.b = b.value.data();
    lin.da = a.grad.data();
    lin.db = b.grad.data();
    lin.rank = options_.lora.rank;
    lin.scale = options_.lora.scale();
    lin.dropout = options_.lora.dropout;
  }
  return lin;
}

LoraAdapters TrainableLlama::Adapters() const {
  LoraAdapters out;
  out.config = options_.lora;
  if (options_.method == TrainMethod::kFull) return out;
  for (int64_t l = 0; l < config_.n_layer; ++l) {
    const LayerParams& lp = layer_params_[static_cast<size_t>(l)];
    const LayerWeights& lw = base_.weights().layers[static_cast<size_t>(l)];
    for (int i = 0; i < 7; ++i) {
      if (lp.lora_a[i] < 0) continue;
      const WeightMatrix& m = ModuleMatrix(lw, kAllLoraModules[i]);
      LoraPair p;
      p.layer = l;
      p.module = kAllLoraModules[i];
      p.rows = m.rows;
      p.cols = m.cols;
      p.rank = options_.lora.rank;
      p.a = params_[static_cast<size_t>(lp.lora_a[i])].value;
      p.b = params_[static_cast<size_t>(lp.lora_b[i])].value;
      out.pairs.push_back(std::move(p));
    }
  }
  return out;
}

}  // namespace anvil
