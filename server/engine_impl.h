// The engine: Submit/Embed/adapters/Drain on any thread, one step thread that runs the batch.
#ifndef ANVIL_SERVER_ENGINE_IMPL_H_
#define ANVIL_SERVER_ENGINE_IMPL_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/adapter_store.h"
#include "server/batch_runner.h"
#include "server/engine.h"
#include "server/engine_stream.h"
#include "server/engine_text.h"
#include "server/json_constraint.h"

namespace anvil::server {

// One request from admission to its end.
struct Sequence {
  int64_t id = 0;
  Request req;
  std::shared_ptr<StreamImpl> stream;
  std::shared_ptr<const AdapterWeights> adapter;  // null: the base model
  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<TextReleaser> text;
  std::unique_ptr<JsonConstraint> json;  // when req.json_object
  std::vector<int32_t> tokens;  // prompt, then generated tokens (EOG excluded)
  int64_t prompt_len = 0;
  int64_t fed = 0;              // leading tokens whose KV the runner holds
  int32_t generated = 0;
  bool open = false;            // the runner holds state for it
  Final final;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(const LlamaModel& model, const EngineOptions& options,
             std::unique_ptr<BatchRunner> runner);
  ~EngineImpl() override;

  absl::StatusOr<std::shared_ptr<Stream>> Submit(Request request) override;
  absl::StatusOr<std::vector<float>> Embed(absl::Span<const int32_t> tokens) override;
  absl::Status LoadAdapter(const std::string& name, const std::string& path) override;
  absl::Status UnloadAdapter(const std::string& name) override;
  std::vector<std::string> Adapters() const override;
  void Drain() override;
  bool WaitIdle(absl::Duration timeout) override;
  EngineStats Stats() const override;
  const LlamaModel& model() const override { return model_; }

  void Start();

 private:
  absl::Status Validate(const Request& r) const;
  void Loop();
  void StepOnce();
  void Admit();
  // The next token of `s` from its logits row (modified in place by constraints): touches only
  // `s`, so the step's sequences pick on the runner's threads at once. EmitNext then publishes
  // it (text, stop strings, stream, finish) on the step thread.
  struct Pick {
    bool no_continuation = false;  // json_object: no token can continue the output
    Event ev;                      // token, logprobs, time
  };
  void PickNext(Sequence& s, float* logits, Pick* pick);
  void EmitNext(Sequence& s, Pick pick);
  // Ends `s` (releases its KV, completes its stream) and drops it from the running set.
  void Finish(Sequence& s, absl::Status status, FinishReason reason);
  void PublishStats(int64_t step_tokens, int64_t step_seqs);
  // Copies queue/batch/KV figures into stats_ (step thread).
  void SyncStats();
  void SyncStatsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LlamaModel& model_;
  EngineOptions options_;  // normalized
  int64_t n_ctx_ = 0;
  std::unique_ptr<BatchRunner> runner_;  // step thread only

  mutable absl::Mutex mu_;
  std::deque<std::unique_ptr<Sequence>> waiting_ ABSL_GUARDED_BY(mu_);
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;  // admitted and not finished
  bool running_any_ ABSL_GUARDED_BY(mu_) = false;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_adapter_key_ ABSL_GUARDED_BY(mu_) = 1;
  EngineStats stats_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const AdapterWeights>> adapters_ ABSL_GUARDED_BY(mu_);

  JsonVocab json_vocab_;  // for json_object requests
  std::vector<std::unique_ptr<Sequence>> running_;  // step thread only
  std::vector<float> logits_;                       // step thread only
  std::thread thread_;
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_ENGINE_IMPL_H_
