// The batching engine behind anvil-server: one model, many concurrent generation requests.
//
// Continuous batching: every step the engine builds one batch from all running sequences (one
// decode token each) plus chunks of waiting prompts (chunked prefill, so a long prompt never
// stalls the others' decode), runs one batched forward pass over the block-managed KV cache,
// samples, and lets finished/cancelled sequences leave and queued ones join. The KV cache is a
// fixed pool of blocks (bounded memory, reused); blocks holding a shared prompt prefix (e.g. a
// system prompt) are reused across requests. LoRA adapters are applied per request.
//
// Transport-free: the gRPC service and the OpenAI-compatible HTTP layer sit on top of this API.
// Thread-safety: every method may be called from any thread.
#ifndef ANVIL_SERVER_ENGINE_H_
#define ANVIL_SERVER_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "model/generate.h"
#include "model/llama_model.h"
#include "model/sampler.h"

namespace anvil::server {

struct EngineOptions {
  int threads = 2;
  int32_t max_running = 16;        // sequences in the running batch
  int32_t max_queue = 64;          // admitted-but-waiting requests; Submit past it: ResourceExhausted
  int32_t max_step_tokens = 512;   // tokens per forward step (decodes + prefill chunks)
  int32_t prefill_chunk = 256;     // at most this many prompt tokens of one sequence per step
  // A step that also carries decode tokens takes prompt tokens up to max_running +
  // decode_step_prefill rows in all (at least decode_step_prefill of them), so that a burst of
  // new prompts stretches the running streams' next token by a bounded amount (the inter-token
  // latency tail: no step costs more than a full batch of decodes plus this many prompt
  // tokens) while a step with few decodes still gets the waiting prompts going; a step with
  // nothing to decode takes up to max_step_tokens.
  int32_t decode_step_prefill = 8;
  int32_t kv_block_tokens = 16;    // positions per KV block
  int64_t kv_blocks = 0;           // pool size; 0: max_running * n_ctx / kv_block_tokens
  // KV cache elements: kF32 (bit-identical to a single Context, e.g. `anvil generate`) or kF16
  // (half the memory and attention bandwidth; K/V rounded to F16 as stored).
  DType kv_type = DType::kF32;
  // kBlockSum: anvil-server --matmul fast (PagedRunnerOptions::matmul).
  MatMulNumerics matmul = MatMulNumerics::kLlamaCpp;
  int64_t n_ctx = 2048;            // per-sequence context (prompt + generated), capped by the model
  bool prefix_cache = true;        // share KV blocks of identical prompt prefixes
  // Request limits (InvalidArgument past them, with the field and the limit in the message).
  int32_t max_prompt_tokens = 0;   // 0: n_ctx - 1
  int32_t max_tokens_limit = 4096;
  int32_t max_top_logprobs = 20;
};

struct Request {
  std::vector<int32_t> prompt;     // token ids, not empty
  int32_t max_tokens = 256;        // >= 1
  std::vector<std::string> stop;   // stop strings (excluded from the output)
  bool stop_at_eog = true;
  SamplingParams sampling;         // temperature <= 0: greedy
  int32_t top_logprobs = -1;       // < 0: no logprobs; 0: the chosen token's; k > 0: also top k
  bool json_object = false;        // constrain the output to one JSON object
  std::string adapter;             // "" = the base model; else a loaded adapter's name
  absl::Time deadline = absl::InfiniteFuture();  // past it: finished with DeadlineExceeded
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
};

// One generated token.
struct Event {
  int32_t token = 0;
  std::string text;                // text released with this token; may be empty (bytes held
                                   // back for a possible stop string or a partial UTF-8 char)
  float logprob = 0;               // when top_logprobs >= 0
  std::vector<TokenLogprob> top;   // when top_logprobs > 0, most likely first
  absl::Time time;                 // when the token was sampled
};

struct Final {
  absl::Status status;             // OK, Cancelled, DeadlineExceeded, Unavailable (shutdown), ...
  FinishReason finish = FinishReason::kLength;
  std::string text;                // all released text (stop string excluded)
  std::vector<int32_t> tokens;     // generated tokens (EOG excluded)
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // prompt positions served from the prefix cache
  absl::Time submitted, first_token;  // first_token == InfinitePast() if none
};

// The consumer's end of one request. Events arrive in order; after the last one the stream is
// done and final() is valid.
class Stream {
 public:
  virtual ~Stream() = default;
  enum class Poll { kEvent, kPending, kDone };
  // Blocking: true with *event filled, false when done.
  virtual bool Next(Event* event) = 0;
  // Non-blocking, for callback-driven transports.
  virtual Poll TryNext(Event* event) = 0;
  // Called from the engine's thread whenever TryNext may return something new (an event or
  // done). Set it before the first TryNext; it must not block.
  virtual void SetWakeup(std::function<void()> wakeup) = 0;
  // Asks the engine to stop this request; its slot and KV blocks are freed within one step, and
  // the stream ends with status Cancelled.
  virtual void Cancel() = 0;
  virtual const Final& final() const = 0;
};

struct EngineStats {
  int64_t queued = 0;              // waiting for a slot
  int64_t running = 0;             // in the batch
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  int64_t steps = 0;               // forward steps run so far
  int64_t step_tokens_total = 0;   // tokens processed over all steps
  // Cumulative histogram of sequences per step: batch_size_counts[i] = steps with i+1 sequences
  // (size max_running).
  std::vector<int64_t> batch_size_counts;
  int64_t prompt_tokens_total = 0;
  int64_t generated_tokens_total = 0;
  int64_t prefix_cache_hit_tokens = 0;
};

class Engine {
 public:
  // The model must outlive the engine. Starts the engine's step thread.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const LlamaModel& model,
                                                        const EngineOptions& options);
  virtual ~Engine() = default;  // ends every stream with Unavailable, joins the thread

  // Admits a request or refuses it at once: InvalidArgument (limits, token ids, sampling
  // parameters), NotFound (unknown adapter), ResourceExhausted (queue full), Unavailable
  // (draining or shut down).
  virtual absl::StatusOr<std::shared_ptr<Stream>> Submit(Request request) = 0;

  // Mean-pooled final hidden states (after the output norm) of `tokens`, L2-normalized [n_embd].
  virtual absl::StatusOr<std::vector<float>> Embed(absl::Span<const int32_t> tokens) = 0;

  // LoRA adapters on the same base, by name: a llama.cpp adapter GGUF or a PEFT directory /
  // adapter_model.safetensors (as train/export writes). Loading or unloading does not disturb
  // requests in flight (a request keeps the adapter it started with). AlreadyExists / NotFound.
  virtual absl::Status LoadAdapter(const std::string& name, const std::string& path) = 0;
  virtual absl::Status UnloadAdapter(const std::string& name) = 0;
  virtual std::vector<std::string> Adapters() const = 0;

  // Stops admitting (Submit answers Unavailable); running and queued requests go on.
  virtual void Drain() = 0;
  // Waits until nothing is queued or running; false on timeout.
  virtual bool WaitIdle(absl::Duration timeout) = 0;

  virtual EngineStats Stats() const = 0;
  virtual const LlamaModel& model() const = 0;
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_ENGINE_H_
