// A llama-family model set up for training (notes §5): its trainable parameters in fp32 (every
// tensor for full fine-tuning; LoRA A/B pairs otherwise), the frozen base weights, a batched
// forward pass that keeps what the backward pass needs (or only each layer's input, with
// gradient checkpointing), and the backward pass that accumulates every parameter's gradient.
// Losses, the optimizer and the loop live in train/; the ops in kernels/.
//
// Shape legend: B sequences in a batch, N = total tokens of the batch, C channels, H/Hkv heads,
// D head dim, F feed-forward width, V vocabulary, r LoRA rank.
#ifndef ANVIL_MODEL_TRAINABLE_LLAMA_H_
#define ANVIL_MODEL_TRAINABLE_LLAMA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/core/thread_pool.h"
#include "model/llama_model.h"
#include "model/lora.h"

namespace anvil {

// How the base weights are held while training.
enum class TrainMethod {
  kFull,   // every tensor is an fp32 parameter (the base is dequantized once)
  kLora,   // frozen base dequantized to fp32 once; LoRA pairs trained
  kQLora,  // frozen base stays in its file type (Q4_1, Q4_0, Q8_0, ...) and is dequantized on the
           // fly, one matrix at a time, for each product; LoRA pairs trained. Same numbers as kLora.
};
const char* TrainMethodName(TrainMethod m);

struct TrainParam {
  std::string name;            // GGUF tensor name, or "<base name>.lora_a" / ".lora_b"
  std::vector<int64_t> shape;  // row-major dims: {rows, cols} or {C}
  std::vector<float> value;
  std::vector<float> grad;     // same size as value, accumulated by Backward
  bool decay = true;           // weight decay applies (false for the 1-D norm weights)
  int64_t numel() const { return static_cast<int64_t>(value.size()); }
};

struct TrainableOptions {
  TrainMethod method = TrainMethod::kLora;
  LoraConfig lora;                     // kLora / kQLora
  bool gradient_checkpointing = false; // keep only each layer's input; recompute in Backward
  uint64_t seed = 42;                  // LoRA A initialization
  int threads = 2;
  Backend backend = Backend::kCpu;
};

// B token sequences laid end to end: sequence b is tokens[starts[b], starts[b + 1]), each with
// its own positions 0.. (no attention across sequences, no padding).
struct SequenceBatch {
  std::vector<int32_t> tokens;  // [N]
  std::vector<int64_t> starts;  // [B + 1]; starts[0] = 0, starts[B] = N
  int64_t size() const { return static_cast<int64_t>(starts.size()) - 1; }
  int64_t n_tokens() const { return static_cast<int64_t>(tokens.size()); }
  void Add(const std::vector<int32_t>& seq);
};

// What one layer's forward pass keeps for its backward pass (rows = the batch's N tokens).
struct TrainLayerActs {
  std::vector<float> h1;              // [N][C] attn_norm output (input of q, k, v)
  std::vector<float> q, k, v;         // [N][H*D], [N][Hkv*D], [N][Hkv*D]; q and k after RoPE
  std::vector<float> attn;            // [N][H*D] attention output (input of wo)
  std::vector<float> x_mid;           // [N][C] residual stream after attention
  std::vector<float> h2;              // [N][C] ffn_norm output (input of gate, up)
  std::vector<float> gate, up, act;   // [N][F]; act = silu(gate) * up (input of down)
  std::vector<float> u[7];            // [N][r] LoRA A x per module (kAllLoraModules order)
  std::vector<float> tmp;             // [N][C] projection output before the residual add
};

struct ForwardOptions {
  bool with_adapters = true;   // false: the frozen base alone (the DPO reference for LoRA)
  bool record = true;          // keep activations for Backward
  uint64_t dropout_key = 0;    // LoRA dropout masks are a hash of (key, layer, module, element)
  // Only these token rows (indices into the batch, in this order) get logits: logits() is then
  // [rows][V] and Backward reads dL/dlogits for them alone (the other rows' are zero). SFT
  // passes the rows that have a target, which skips the LM head for the prompt. nullptr: all.
  const std::vector<int64_t>* logit_rows = nullptr;
};

class TrainableLlama {
 public:
  // The base model must outlive this object. InvalidArgument for a bad LoRA config (rank < 1,
  // dropout outside [0, 1), no targets) or an empty batch later.
  static absl::StatusOr<std::unique_ptr<TrainableLlama>> Create(const LlamaModel& base,
                                                                const TrainableOptions& options);
  ~TrainableLlama();

  const LlamaConfig& config() const { return config_; }
  const TrainableOptions& options() const { return options_; }
  std::vector<TrainParam>& params() { return params_; }
  const std::vector<TrainParam>& params() const { return params_; }
  // nullptr when absent.
  TrainParam* FindParam(const std::string& name);
  const ExecContext& exec() const { return exec_; }

  // Runs the batch; logits() is then [N][V] (or [rows][V], ForwardOptions::logit_rows).
  // InvalidArgument for an empty batch, an empty sequence, a sequence longer than the training
  // context, a token id outside [0, V) or a logit row outside [0, N).
  absl::Status Forward(const SequenceBatch& batch, const ForwardOptions& options = {});
  float* logits() { return logits_.data(); }  // [N or rows][V]
  int64_t n_tokens() const { return n_tokens_; }
  int64_t n_logit_rows() const { return n_logit_rows_; }

  // The caller has overwritten logits() with dL/dlogits; adds dL/dparam to every param's grad.
  // FailedPrecondition when the last Forward did not record (or used with_adapters = false).
  absl::Status Backward();
  void ZeroGrad();

  // The LoRA pairs as they are now (kLora / kQLora), for export.
  LoraAdapters Adapters() const;

 private:
  TrainableLlama(const LlamaModel& base, const TrainableOptions& options);
  absl::Status Init();

  // An fp32 view of a weight matrix for this product: the parameter (full), the dequantized
  // base (kLora), or the base dequantized now into `scratch` (kQLora).
  const float* Weight(const WeightMatrix& m, const TrainParam* full, std::vector<float>* scratch);
  // One linear module of a layer as the passes see it: the frozen or trainable weight and, when
  // adapted, its LoRA pair.
  struct Linear {
    const WeightMatrix* base = nullptr;
    TrainParam* full = nullptr;  // full fine-tuning: the matrix as a parameter (else frozen)
    const float* a = nullptr;    // [r][cols], null when not adapted
    const float* b = nullptr;    // [rows][r]
    float* da = nullptr;
    float* db = nullptr;
    int64_t rows = 0, cols = 0, rank = 0;
    float scale = 0.0f, dropout = 0.0f;
    uint64_t stream = 0;  // layer * 7 + module: the dropout stream
  };
  Linear MakeLinear(int64_t layer, LoraModule module, bool with_adapters);
  absl::Status LinearForward(const Linear& lin, const float* x, float* y, float* u, int64_t n,
                             uint64_t dropout_key);
  absl::Status LinearBackward(const Linear& lin, const float* g, const float* x, const float* u,
                              float* dx, bool accumulate_dx, int64_t n, uint64_t dropout_key);
  absl::Status LayerForward(int64_t l, float* x, TrainLayerActs* a, const ForwardOptions& fo);
  absl::Status LayerBackward(int64_t l, float* dx, const TrainLayerActs& a, const float* x_in);

  const LlamaModel& base_;
  LlamaConfig config_;
  TrainableOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  ExecContext exec_;
  std::vector<TrainParam> params_;

  // Per layer and module: indices into params_ (-1 when absent).
  struct LayerParams {
    int attn_norm = -1, ffn_norm = -1;
    int w[7] = {-1, -1, -1, -1, -1, -1, -1};       // full fine-tuning: the matrices
    int lora_a[7] = {-1, -1, -1, -1, -1, -1, -1};  // LoRA pairs
    int lora_b[7] = {-1, -1, -1, -1, -1, -1, -1};
  };
  std::vector<LayerParams> layer_params_;
  int token_embd_ = -1, output_norm_ = -1, output_ = -1;
  // kLora: the base matrices dequantized once, keyed like layer_params_ (+ embeddings/head).
  std::vector<std::vector<std::vector<float>>> base_f32_;  // [layer][module]
  std::vector<float> embd_f32_, output_f32_;
  std::vector<float> scratch_w_;  // kQLora: one dequantized matrix at a time

  // The last forward.
  SequenceBatch batch_;
  std::vector<int32_t> pos_;  // [N]
  int64_t n_tokens_ = 0;
  bool recorded_ = false;
  uint64_t dropout_key_ = 0;
  std::vector<std::vector<float>> x_in_;   // [layer][N][C] each layer's input
  std::vector<TrainLayerActs> acts_;  // [layer], or one when checkpointing
  std::vector<float> x_final_, h_final_;   // [N][C] before / after the output norm
  std::vector<float> logits_;              // [N or rows][V]
  int64_t n_logit_rows_ = 0;
  std::vector<int64_t> logit_rows_;        // the selected rows; empty with all_rows_
  bool all_rows_ = true;
  std::vector<float> h_rows_, dh_rows_;    // [rows][C] the head's input and its gradient
  // Backward scratch: [N][C] residual gradient, [N][C] block-input gradient, [N][F] x2,
  // [N][H*D] x2, [N][Hkv*D] x2; LoRA: [N][r] and [N][max(C, F)] (dropout input / branch dx).
  std::vector<float> dx_, dh_, d_f1_, d_f2_, d_q1_, d_q2_, d_k_, d_v_, lora_g_, lora_x_;
  std::vector<float> x_recompute_;         // [N][C] checkpointing: the layer input to recompute
};

// splitmix64 of the inputs: counter-based randomness for LoRA dropout and initialization, the
// same on every platform and independent of thread count.
uint64_t HashCounter(uint64_t key, uint64_t index);

// Inverted dropout with a counter-based mask: y[i] = keep(i) ? x[i] / (1 - p) : 0, where keep
// depends only on (key, stream, i). y may alias x.
void LoraDropout(uint64_t key, uint64_t stream, float p, const float* x, float* y, int64_t n);

}  // namespace anvil

#endif  // ANVIL_MODEL_TRAINABLE_LLAMA_H_
