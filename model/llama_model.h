// A loaded llama-family model (mapped GGUF + config + weight views + tokenizer + chat template)
// and an inference Context over it: KV cache, scratch buffers, batched forward pass.
// One Context serves one sequence; many Contexts may share one LlamaModel (read-only).
#ifndef ANVIL_MODEL_LLAMA_MODEL_H_
#define ANVIL_MODEL_LLAMA_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "kernels/core/thread_pool.h"
#include "model/chat_template.h"
#include "model/gguf.h"
#include "model/llama_config.h"
#include "model/llama_weights.h"
#include "model/tokenizer.h"

namespace anvil {

class LlamaModel {
 public:
  // Maps and validates `path`: NotFound when it does not exist, InvalidArgument for a malformed
  // file, Unimplemented for an architecture/tensor type/tokenizer we do not support.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Load(const std::string& path);
  static absl::StatusOr<std::unique_ptr<LlamaModel>> FromFile(std::unique_ptr<gguf::GgufFile> f);

  const LlamaConfig& config() const { return config_; }
  const LlamaWeights& weights() const { return weights_; }
  const gguf::GgufFile& file() const { return *file_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // The chat template from tokenizer.chat_template, or nullopt when it is absent/unrecognized
  // (chat_template_error() says why).
  const std::optional<ChatTemplate>& chat_template() const { return chat_template_; }
  const std::string& chat_template_error() const { return chat_template_error_; }

 private:
  LlamaModel() = default;
  std::unique_ptr<gguf::GgufFile> file_;
  LlamaConfig config_;
  LlamaWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::optional<ChatTemplate> chat_template_;
  std::string chat_template_error_;
};

// Observer of intermediate activations (debugging, parity checks against other engines):
// called after each named step with rows x cols floats, rows = tokens of the chunk.
using ActivationObserver = std::function<void(const std::string& name, int64_t layer,
                                              const float* data, int64_t rows, int64_t cols)>;

struct ContextOptions {
  int64_t n_ctx = 2048;    // KV cache capacity in positions (capped at the training context)
  int64_t n_batch = 512;   // tokens per forward chunk (bounds scratch memory)
  int threads = 2;
  Backend backend = Backend::kCpu;
  // kBlockSum: the block-sum matmul order (kernels/backend.h), as `anvil-server --matmul fast`;
  // the default is llama.cpp's.
  MatMulNumerics matmul = MatMulNumerics::kLlamaCpp;
  ActivationObserver observer;  // optional
};

// Which positions of an Eval get logits.
struct LogitsRequest {
  enum class Mode { kLast, kAll, kFrom } mode = Mode::kLast;
  int64_t from = 0;  // kFrom: positions [from, T) of this call
  static LogitsRequest Last() { return {}; }
  static LogitsRequest All() { return {Mode::kAll, 0}; }
  static LogitsRequest From(int64_t i) { return {Mode::kFrom, i}; }
};

class Context {
 public:
  static absl::StatusOr<std::unique_ptr<Context>> Create(const LlamaModel& model,
                                                         const ContextOptions& options);
  ~Context();

  // Appends `tokens` at positions n_past().. and runs the forward pass. Logits for the requested
  // positions are then in logits() as [n_logits][V]. InvalidArgument for an out-of-range token
  // id; ResourceExhausted when the KV cache would overflow (nothing is changed then).
  absl::Status Eval(absl::Span<const int32_t> tokens, LogitsRequest request = LogitsRequest::Last());

  const float* logits(int64_t i) const { return logits_.data() + i * n_vocab_; }  // [V]
  int64_t n_logits() const { return n_logits_; }
  int64_t n_vocab() const { return n_vocab_; }
  int64_t n_past() const { return n_past_; }
  int64_t n_ctx() const { return n_ctx_; }
  // Forgets positions >= n (n <= n_past()); Reset() forgets everything.
  void Truncate(int64_t n);
  void Reset() { Truncate(0); }
  const LlamaModel& model() const { return model_; }
  const ExecContext& exec() const { return exec_; }

 private:
  Context(const LlamaModel& model, const ContextOptions& options);
  absl::Status EvalChunk(absl::Span<const int32_t> tokens, int64_t out_begin, int64_t out_end,
                         float* logits_out);

  const LlamaModel& model_;
  ContextOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  ExecContext exec_;
  int64_t n_ctx_ = 0;
  int64_t n_vocab_ = 0;
  int64_t n_past_ = 0;
  // KV cache: per layer [n_ctx][Hkv][D] floats, K and V.
  std::vector<std::vector<float>> k_cache_, v_cache_;
  // Scratch for one chunk of up to n_batch tokens.
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, gate_, up_;
  std::vector<int32_t> pos_;
  std::vector<float> logits_;
  int64_t n_logits_ = 0;
};

}  // namespace anvil

#endif  // ANVIL_MODEL_LLAMA_MODEL_H_
