// Job-level helpers for the cluster integration tests: a work directory with the tiny model and
// chat data, recipes as FinetuneSpecs, submitting, following a job to its end (across
// coordinator restarts), and reading a run's per-step losses.
#ifndef ANVIL_TESTS_TESTING_CLUSTER_JOBS_H_
#define ANVIL_TESTS_TESTING_CLUSTER_JOBS_H_

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/tiny_model.h"
#include "nlohmann/json.hpp"
#include "rpc/job_spec.h"
#include "tests/testing/cluster_harness.h"

namespace anvil::testing {

// A fresh directory with tiny.gguf and chat.jsonl (`records` short chats).
inline std::string MakeClusterWorkDir(const std::string& name, int records = 32) {
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/cluster_", name, "_", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  (void)WriteTinyLlamaGguf({}, dir + "/tiny.gguf");
  std::ofstream chat(dir + "/chat.jsonl");
  for (int i = 0; i < records; ++i) {
    chat << R"({"messages": [{"role": "user", "content": "Who is number )" << i
         << R"(?"}, {"role": "assistant", "content": "Ada )" << i * 7 % 13 << R"("}]})" << "\n";
  }
  return dir;
}

// A LoRA SFT recipe on the tiny model writing to `dir`/`out`.
inline std::string LoraRecipe(const std::string& out, int steps, int checkpoint_every,
                              const std::string& extra = "") {
  return absl::StrCat(R"(model: tiny.gguf
method: lora
data: {train: chat.jsonl, max_length: 64}
lora: {rank: 4, alpha: 8, dropout: 0.1}
optim: {lr: 0.01}
train: {steps: )", steps, R"(, micro_batch: 2, grad_accum: 2, threads: 1, seed: 7}
checkpoint: {every: )", checkpoint_every, R"(, keep: 2}
output: {dir: )", out, R"(, adapter: [peft]}
)", extra);
}

inline v1::JobSpec FinetuneJob(const std::string& dir, const std::string& yaml, int min_workers,
                               int max_workers = 0) {
  v1::JobSpec spec;
  absl::StatusOr<v1::FinetuneSpec> ft = rpc::FinetuneSpecFromYaml(yaml, "test.yaml", dir);
  EXPECT_TRUE(ft.ok()) << ft.status();
  if (ft.ok()) *spec.mutable_finetune() = *ft;
  spec.set_name("test");
  spec.set_min_workers(min_workers);
  spec.set_max_workers(max_workers);
  return spec;
}

inline absl::StatusOr<v1::Job> Submit(const Coordinator& c, const v1::JobSpec& spec,
                                      const std::string& request_id = "") {
  v1::SubmitJobRequest req;
  req.set_request_id(request_id);
  *req.mutable_spec() = spec;
  grpc::ClientContext ctx;
  c.Prepare(&ctx);
  v1::Job job;
  const grpc::Status s = c.Jobs()->SubmitJob(&ctx, req, &job);
  if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  return job;
}

inline absl::StatusOr<v1::Job> GetJob(const Coordinator& c, const std::string& id) {
  grpc::ClientContext ctx;
  c.Prepare(&ctx);
  v1::GetJobRequest req;
  req.set_job_id(id);
  v1::Job job;
  const grpc::Status s = c.Jobs()->GetJob(&ctx, req, &job);
  if (!s.ok()) return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  return job;
}

inline bool IsFinalState(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
         s == v1::JOB_STATE_CANCELLED;
}

// Follows `job_id` from after_seq until a final state or `timeout_s`; calls on_event for each
// event. Reconnects while the coordinator is unreachable (it may be restarting).
template <typename OnEvent>
std::vector<v1::JobEvent> FollowJob(const Coordinator& c, const std::string& job_id,
                                    int timeout_s, OnEvent&& on_event, int64_t after_seq = 0) {
  std::vector<v1::JobEvent> events;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    grpc::ClientContext ctx;
    c.Prepare(&ctx, timeout_s);
    v1::WatchJobRequest req;
    req.set_job_id(job_id);
    req.set_after_seq(after_seq);
    auto reader = c.Jobs()->WatchJob(&ctx, req);
    v1::JobEvent ev;
    bool final = false;
    while (reader->Read(&ev)) {
      after_seq = ev.seq();
      events.push_back(ev);
      on_event(ev);
      if (ev.has_state() && IsFinalState(ev.state().state())) final = true;
    }
    reader->Finish();
    if (final) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return events;
}

inline std::vector<v1::JobEvent> FollowJob(const Coordinator& c, const std::string& job_id,
                                           int timeout_s = 300) {
  return FollowJob(c, job_id, timeout_s, [](const v1::JobEvent&) {});
}

// step -> loss from a metrics JSONL (the last line of a step wins).
inline std::map<int64_t, double> ReadLosses(const std::string& metrics_path) {
  std::map<int64_t, double> out;
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    out[j.value("step", int64_t{0})] = j.value("loss", 0.0);
  }
  return out;
}

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_CLUSTER_JOBS_H_
