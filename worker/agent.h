// The worker agent behind anvil-worker: registers with the coordinator, heartbeats from its own
// thread, long-polls for tasks and runs each in this process (worker/task_runner.h), reporting
// rank 0's steps and every task's end. It outlives coordinator restarts (every RPC has a
// deadline and is retried with backoff; an unknown worker registers again) and failed tasks
// (the failure is reported, then it polls again). Flag parsing and signals are main.cc's.
#ifndef ANVIL_WORKER_AGENT_H_
#define ANVIL_WORKER_AGENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "anvil/v1/workers.grpc.pb.h"
#include "worker/task_runner.h"

namespace anvil::worker {

struct AgentConfig {
  std::string coordinator = "127.0.0.1:7070";
  std::string token;                      // empty: no authorization metadata
  std::string name;                       // stable across restarts, e.g. host:slot
  int threads = 1;                        // CPU threads for training
  std::string gloo_host = "127.0.0.1";    // where peers reach this worker's collectives
  std::chrono::milliseconds collective_timeout{60000};
  std::string collective = "gloo";  // or "nccl" (TaskEnvironment::collective)
  int cuda_device = 0;
  std::chrono::milliseconds poll_wait{10000};    // PollTask's wait_ms
  std::chrono::milliseconds rpc_deadline{10000}; // every other call (PollTask: wait + this)
  std::chrono::milliseconds max_backoff{5000};   // between retries of a failing call
  bool progress = true;                          // rank 0's step lines on stderr
  std::string server_binary;                     // TaskEnvironment::server_binary
  // Called after each successful registration (main prints "registered as").
  std::function<void(const std::string& worker_id)> on_registered;
};

class Agent {
 public:
  explicit Agent(AgentConfig config);
  ~Agent();  // stops and joins the heartbeat thread
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Registers, then takes and runs tasks until Shutdown(). OK after Shutdown(). An error only
  // when the coordinator refuses the first registration outright (UNAUTHENTICATED,
  // PERMISSION_DENIED, INVALID_ARGUMENT: the operator must act); an unreachable coordinator is
  // retried for ever.
  absl::Status Run();
  // From any thread (not from a signal handler): stops the running task at its next step,
  // reports it, and makes Run() return.
  void Shutdown();

  std::string worker_id() const;

 private:
  // Retries until registered or shut down; `first`: give up on a refusal (see Run()).
  // Otherwise a no-op when the worker id is no longer `stale_id` (the other thread has
  // registered again already).
  absl::Status Register(bool first, const std::string& stale_id);
  void HeartbeatLoop();
  // Runs one task and reports its end.
  void Execute(const v1::Task& task);
  bool ReportStep(const v1::Task& task, const train::StepMetrics& m);
  // Sends one log line now (not kept for later if the coordinator is away); true: stop.
  bool ReportLog(const v1::Task& task, const std::string& line);
  // Sends the unacknowledged progress reports in order; false when one fails (the rest wait for
  // the next call). Sets *stop when the coordinator says to stop. Only the task thread calls it.
  bool SendBacklog(const v1::Task& task, bool* stop);
  void Complete(const v1::Task& task, const TaskOutcome& outcome);
  // Sleeps up to `d`; returns early (false) on shutdown.
  bool SleepFor(std::chrono::milliseconds d);
  bool shutting_down() const { return shutdown_.load(); }

  const AgentConfig config_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Workers::Stub> stub_;

  mutable std::mutex mu_;  // guards the fields below; never held across an RPC
  std::condition_variable wake_;
  std::string worker_id_;
  std::chrono::milliseconds heartbeat_interval_{2000};
  std::string task_id_;                     // the running task, empty when idle
  // Rank 0's step reports not yet acknowledged (the coordinator may be restarting): sent in
  // order before newer ones and before CompleteTask, so the job's metric history has no holes.
  // Task thread only; bounded (the oldest are dropped past kMaxBacklog).
  std::deque<v1::Progress> backlog_;
  bool progress_failing_ = false;
  static constexpr size_t kMaxBacklog = 100000;
  grpc::ClientContext* poll_context_ = nullptr;  // the PollTask in flight, to cancel it

  std::mutex register_mu_;                  // one registration at a time (loop or heartbeat)
  std::atomic<bool> shutdown_{false};
  std::atomic<bool> stop_task_{false};      // the coordinator or Shutdown() said stop
  std::thread heartbeat_;
};

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_AGENT_H_
