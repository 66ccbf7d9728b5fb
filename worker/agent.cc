// Agent: the worker's control loop. Threads: the caller's (Run: register, poll, run tasks —
// training runs here), the heartbeat thread, and whoever calls Shutdown(). mu_ guards the
// shared fields and is never held across an RPC, except to cancel the PollTask in flight.
#include "worker/agent.h"
#ifdef ANVIL_WITH_NCCL
#include "worker/nccl_collective.h"
#endif

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "rpc/auth.h"
#include "rpc/channel.h"
#include "rpc/status.h"

namespace anvil::worker {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{200};
// A coordinator that answers slowly must not hold up training for long.
constexpr milliseconds kProgressDeadline{5000};
// How long a task's end is retried while the coordinator is unreachable.
constexpr milliseconds kCompleteRetryFor{60000};

std::string CpuName() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "model name")) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
    }
  }
  return "cpu";
}

bool Refusal(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAUTHENTICATED || c == grpc::StatusCode::PERMISSION_DENIED ||
         c == grpc::StatusCode::INVALID_ARGUMENT;
}

std::string Describe(const grpc::Status& s) { return rpc::FromGrpc(s).ToString(); }

}  // namespace

Agent::Agent(AgentConfig config) : config_(std::move(config)) {
  channel_ = rpc::CreateClusterChannel(config_.coordinator);
  stub_ = v1::Workers::NewStub(channel_);
}

Agent::~Agent() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
  }
  wake_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
}

std::string Agent::worker_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  return worker_id_;
}

void Agent::Shutdown() {
  std::lock_guard<std::mutex> lock(mu_);
  shutdown_ = true;
  stop_task_ = true;
  if (poll_context_ != nullptr) poll_context_->TryCancel();
  wake_.notify_all();
}

bool Agent::SleepFor(milliseconds d) {
  std::unique_lock<std::mutex> lock(mu_);
  wake_.wait_for(lock, d, [this] { return shutting_down(); });
  return !shutting_down();
}

absl::Status Agent::Register(bool first, const std::string& stale_id) {
  std::lock_guard<std::mutex> registering(register_mu_);
  // Another thread registered again since this one saw `stale_id`: nothing left to do.
  if (!first && worker_id() != stale_id) return absl::OkStatus();
  milliseconds backoff = kFirstBackoff;
  bool logged = false;
  while (!shutting_down()) {
    v1::RegisterRequest request;
    request.set_name(config_.name);
    v1::Device* cpu = request.add_devices();
    cpu->set_kind("cpu");
    cpu->set_name(CpuName());
    cpu->set_threads(config_.threads);
#ifdef ANVIL_WITH_NCCL
    for (const GpuInfo& g : ListGpus()) {
      v1::Device* gpu = request.add_devices();
      gpu->set_kind("cuda");
      gpu->set_name(g.name);
      gpu->set_memory_bytes(g.memory_bytes);
    }
#endif
    v1::RegisterResponse response;
    grpc::ClientContext context;
    rpc::PrepareContext(&context, config_.token, config_.rpc_deadline);
    const grpc::Status s = stub_->Register(&context, request, &response);
    if (s.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        worker_id_ = response.worker_id();
        heartbeat_interval_ = milliseconds(std::max<int64_t>(100, response.heartbeat_interval_ms() > 0
                                                                       ? response.heartbeat_interval_ms()
                                                                       : 2000));
      }
      if (config_.on_registered) config_.on_registered(response.worker_id());
      return absl::OkStatus();
    }
    if (first && Refusal(s.error_code())) {
      return absl::Status(rpc::FromGrpc(s).code(),
                          absl::StrCat("the coordinator at ", config_.coordinator,
                                       " refused to register worker ", config_.name, ": ",
                                       s.error_message()));
    }
    if (!logged) {
      std::fprintf(stderr, "anvil-worker %s: cannot register with %s (%s); retrying\n",
                   config_.name.c_str(), config_.coordinator.c_str(), Describe(s).c_str());
      logged = true;
    }
    SleepFor(backoff);
    backoff = std::min(backoff * 2, config_.max_backoff);
  }
  return absl::OkStatus();
}

void Agent::HeartbeatLoop() {
  milliseconds backoff = kFirstBackoff;
  bool failing = false;
  for (;;) {
    milliseconds interval;
    {
      std::lock_guard<std::mutex> lock(mu_);
      interval = heartbeat_interval_;
    }
    if (!SleepFor(failing ? std::min(backoff, interval) : interval)) return;
    v1::HeartbeatRequest request;
    std::string task_id;
    {
      std::lock_guard<std::mutex> lock(mu_);
      request.set_worker_id(worker_id_);
      task_id = task_id_;
    }
    request.set_task_id(task_id);
    v1::HeartbeatResponse response;
    grpc::ClientContext context;
    rpc::PrepareContext(&context, config_.token, config_.rpc_deadline);
    const grpc::Status s = stub_->Heartbeat(&context, request, &response);
    if (!s.ok()) {
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        (void)Register(false, request.worker_id());
        continue;
      }
      if (!failing) {
        std::fprintf(stderr, "anvil-worker %s: heartbeat failed (%s); retrying\n",
                     config_.name.c_str(), Describe(s).c_str());
      }
      failing = true;
      backoff = std::min(backoff * 2, config_.max_backoff);
      continue;
    }
    if (failing) std::fprintf(stderr, "anvil-worker %s: heartbeat back\n", config_.name.c_str());
    failing = false;
    backoff = kFirstBackoff;
    if (response.stop_task() && !task_id.empty()) {
      // Only the task the heartbeat was about: a newer one must not stop for an older answer.
      std::lock_guard<std::mutex> lock(mu_);
      if (task_id_ == task_id) stop_task_ = true;
    }
    if (response.reregister()) (void)Register(false, request.worker_id());
  }
}

bool Agent::ReportStep(const v1::Task& task, const train::StepMetrics& m) {
  v1::Progress p;
  p.set_step(m.step);
  p.set_total_steps(m.total_steps);
  p.set_loss(m.loss);
  p.set_lr(m.lr);
  p.set_grad_norm(m.grad_norm);
  p.set_tokens_per_s(m.tokens_per_s);
  p.set_eta_s(m.eta_s);
  backlog_.push_back(std::move(p));
  if (backlog_.size() > kMaxBacklog) backlog_.pop_front();
  bool stop = false;
  SendBacklog(task, &stop);
  return stop;
}

bool Agent::ReportLog(const v1::Task& task, const std::string& line) {
  v1::ReportProgressRequest request;
  request.set_worker_id(worker_id());
  request.set_task_id(task.task_id());
  request.add_log_lines(line);
  v1::ReportProgressResponse response;
  grpc::ClientContext context;
  rpc::PrepareContext(&context, config_.token, std::min(config_.rpc_deadline, kProgressDeadline));
  const grpc::Status s = stub_->ReportProgress(&context, request, &response);
  if (!s.ok()) {
    std::fprintf(stderr, "anvil-worker %s: log line not delivered (%s): %s\n",
                 config_.name.c_str(), Describe(s).c_str(), line.c_str());
    return false;
  }
  return response.stop_task();
}

bool Agent::SendBacklog(const v1::Task& task, bool* stop) {
  while (!backlog_.empty()) {
    v1::ReportProgressRequest request;
    request.set_worker_id(worker_id());
    request.set_task_id(task.task_id());
    *request.mutable_progress() = backlog_.front();
    v1::ReportProgressResponse response;
    grpc::ClientContext context;
    rpc::PrepareContext(&context, config_.token,
                        std::min(config_.rpc_deadline, kProgressDeadline));
    const grpc::Status s = stub_->ReportProgress(&context, request, &response);
    if (!s.ok()) {
      // Training goes on (the heartbeat carries stop requests too); the report waits in the
      // backlog. One line per outage, not one per step.
      if (!progress_failing_) {
        std::fprintf(stderr,
                     "anvil-worker %s: progress report of step %lld failed (%s); kept for "
                     "later\n",
                     config_.name.c_str(), static_cast<long long>(request.progress().step()),
                     Describe(s).c_str());
      }
      progress_failing_ = true;
      return false;
    }
    progress_failing_ = false;
    backlog_.pop_front();
    if (response.stop_task()) *stop = true;
  }
  return true;
}

void Agent::Complete(const v1::Task& task, const TaskOutcome& outcome) {
  v1::CompleteTaskRequest request;
  request.set_task_id(task.task_id());
  request.set_ok(outcome.status.ok());
  if (!outcome.status.ok()) request.set_error(outcome.status.ToString());
  for (const std::string& o : outcome.outputs) request.add_outputs(o);
  const auto give_up = std::chrono::steady_clock::now() + kCompleteRetryFor;
  milliseconds backoff = kFirstBackoff;
  for (;;) {
    request.set_worker_id(worker_id());
    v1::CompleteTaskResponse response;
    grpc::ClientContext context;
    rpc::PrepareContext(&context, config_.token, config_.rpc_deadline);
    const grpc::Status s = stub_->CompleteTask(&context, request, &response);
    if (s.ok()) return;
    const bool retry = s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!retry || shutting_down() || std::chrono::steady_clock::now() > give_up) {
      std::fprintf(stderr, "anvil-worker %s: could not report the end of task %s (%s)\n",
                   config_.name.c_str(), task.task_id().c_str(), Describe(s).c_str());
      return;
    }
    SleepFor(backoff);
    backoff = std::min(backoff * 2, config_.max_backoff);
  }
}

void Agent::Execute(const v1::Task& task) {
  stop_task_ = shutting_down();
  {
    std::lock_guard<std::mutex> lock(mu_);
    task_id_ = task.task_id();
  }
  std::fprintf(stderr, "anvil-worker %s: task %s: job %s attempt %d, rank %d of %d\n",
               config_.name.c_str(), task.task_id().c_str(), task.job_id().c_str(), task.attempt(),
               task.rank(), task.world_size());
  TaskEnvironment env;
  env.channel = channel_;
  env.token = config_.token;
  env.threads = config_.threads;
  env.gloo_host = config_.gloo_host;
  env.collective_timeout = config_.collective_timeout;
  env.collective = config_.collective;
  env.cuda_device = config_.cuda_device;
  env.progress = config_.progress;
  env.should_stop = [this] { return stop_task_.load() || shutting_down(); };
  env.report_step = [this, &task](const train::StepMetrics& m) { return ReportStep(task, m); };
  env.report_log = [this, &task](const std::string& line) { return ReportLog(task, line); };
  env.server_binary = config_.server_binary;
  backlog_.clear();
  const TaskOutcome outcome = RunTask(task, env);
  // The reports still waiting go first (the coordinator may be back by now).
  const auto give_up = std::chrono::steady_clock::now() + kCompleteRetryFor;
  for (bool stop = false; !SendBacklog(task, &stop) && !shutting_down() &&
                          std::chrono::steady_clock::now() < give_up;) {
    SleepFor(milliseconds(200));
  }
  std::fprintf(stderr, "anvil-worker %s: task %s %s\n", config_.name.c_str(),
               task.task_id().c_str(), outcome.status.ok() ? "succeeded" : outcome.status.ToString().c_str());
  Complete(task, outcome);
  std::lock_guard<std::mutex> lock(mu_);
  task_id_.clear();
}

absl::Status Agent::Run() {
  if (absl::Status s = Register(/*first=*/true, ""); !s.ok()) return s;
  heartbeat_ = std::thread(&Agent::HeartbeatLoop, this);
  milliseconds backoff = kFirstBackoff;
  bool failing = false;
  while (!shutting_down()) {
    grpc::ClientContext context;
    rpc::PrepareContext(&context, config_.token, config_.poll_wait + config_.rpc_deadline);
    v1::PollTaskRequest request;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutting_down()) break;
      poll_context_ = &context;
      request.set_worker_id(worker_id_);
    }
    request.set_wait_ms(config_.poll_wait.count());
    v1::PollTaskResponse response;
    const grpc::Status s = stub_->PollTask(&context, request, &response);
    {
      std::lock_guard<std::mutex> lock(mu_);
      poll_context_ = nullptr;
    }
    if (shutting_down()) break;
    if (!s.ok()) {
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        (void)Register(false, request.worker_id());
        continue;
      }
      if (!failing) {
        std::fprintf(stderr, "anvil-worker %s: polling for tasks failed (%s); retrying\n",
                     config_.name.c_str(), Describe(s).c_str());
      }
      failing = true;
      SleepFor(backoff);
      backoff = std::min(backoff * 2, config_.max_backoff);
      continue;
    }
    failing = false;
    backoff = kFirstBackoff;
    if (response.has_task()) Execute(response.task());
  }
  return absl::OkStatus();
}

}  // namespace anvil::worker
