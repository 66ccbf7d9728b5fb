// What the gRPC service and the HTTP API share, above the engine: the serving state (loading,
// serving, draining), the model's public name and "base+adapter" names, prompt tokenization and
// chat rendering, transport-neutral generation parameters -> engine Request, and the metrics.
// No transport headers here: both transports are thin adapters over this class.
#ifndef ANVIL_SERVER_SERVER_CORE_H_
#define ANVIL_SERVER_SERVER_CORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "model/chat_template.h"
#include "model/llama_model.h"
#include "server/engine.h"
#include "server/metrics.h"
#include "server/server_options.h"

namespace anvil::server {

enum class ServingState { kLoading, kServing, kDraining };
const char* ServingStateName(ServingState s);

// Generation parameters as a client gives them; unset ones take the server's defaults.
struct GenerationParams {
  std::optional<int32_t> max_tokens;
  std::vector<std::string> stop;
  std::optional<float> temperature, top_p, min_p, repeat_penalty;
  std::optional<int32_t> top_k, repeat_last_n;
  std::optional<uint64_t> seed;
  int32_t top_logprobs = -1;         // < 0: no logprobs
  bool json_object = false;
  bool ignore_eos = false;
  std::string adapter;
};

class InferenceCore {
 public:
  explicit InferenceCore(ServerOptions options);
  ~InferenceCore();

  // Loads the model, starts the engine, loads the --adapter list, then serves. Called once (on a
  // background thread, so the listeners answer UNAVAILABLE / 503 "loading" meanwhile).
  absl::Status Load();
  // Stops admitting (Unavailable); requests in flight go on. WaitIdle waits for them.
  void Drain();
  bool WaitIdle(absl::Duration timeout);

  ServingState state() const { return state_.load(std::memory_order_acquire); }
  // OK while serving; Unavailable ("model is loading" / "server is draining") otherwise.
  absl::Status CheckServing() const;

  const ServerOptions& options() const { return options_; }
  const std::string& model_id() const { return model_id_; }
  Metrics& metrics() { return metrics_; }
  // Valid once serving (and while draining).
  Engine& engine() { return *engine_; }
  const LlamaModel& model() const { return *model_; }

  // "ID" -> "", "ID+ADAPTER" -> "ADAPTER" (NotFound when not loaded), anything else: NotFound.
  // An empty name is the base model.
  absl::StatusOr<std::string> ResolveModelName(const std::string& name) const;
  // The model ids /v1/models lists: the base and one "base+adapter" per loaded adapter.
  std::vector<std::string> ModelIds() const;

  // Prompt text -> tokens as `anvil generate` does (special tokens parsed, BOS per the model);
  // InvalidArgument when empty.
  absl::StatusOr<std::vector<int32_t>> TokenizePrompt(const std::string& text) const;
  // Renders a chat with the model's template (FailedPrecondition when it has none); adds the
  // template's stop strings to *stop.
  absl::StatusOr<std::string> RenderChat(const std::vector<ChatMessage>& messages,
                                         std::vector<std::string>* stop) const;

  // Validates `params` (InvalidArgument naming the field) and builds the engine request.
  // `default_max_tokens` applies when params.max_tokens is unset.
  absl::StatusOr<Request> BuildRequest(std::vector<int32_t> prompt, const GenerationParams& params,
                                       int32_t default_max_tokens) const;
  // CheckServing, then engine().Submit.
  absl::StatusOr<std::shared_ptr<Stream>> Submit(Request request);
  // Cancels every stream still alive (shutdown past the drain timeout).
  void CancelAll();

  absl::StatusOr<std::vector<float>> Embed(const std::vector<int32_t>& tokens);

  // The Prometheus text (engine gauges included once loaded).
  std::string RenderMetrics();

 private:
  ServerOptions options_;
  std::string model_id_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Engine> engine_;
  Metrics metrics_;
  std::atomic<ServingState> state_{ServingState::kLoading};
  absl::Mutex streams_mu_;
  std::vector<std::weak_ptr<Stream>> streams_ ABSL_GUARDED_BY(streams_mu_);
};

// The model id for a path: its file name without the directory and a ".gguf" suffix.
std::string ModelIdFromPath(const std::string& path);

}  // namespace anvil::server

#endif  // ANVIL_SERVER_SERVER_CORE_H_
