// Scheduler: placement, the job side of the lifecycle (submit, cancel, attempts), loading and
// committing. The worker side (register, heartbeat, tasks) is in scheduler_workers.cc.
#include "coordinator/scheduler.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"

namespace anvil::coordinator {
namespace {

constexpr int32_t kDefaultMaxRetries = 2;
constexpr char kPageTokenPrefix[] = "anvil-jobs-before:";
constexpr char kRetrying[] = "; retrying";

std::string WorkerCount(int32_t n) { return absl::StrCat(n, n == 1 ? " worker" : " workers"); }

// The "attempt N failed: cause; retrying" head of a requeued job's reason, kept in front of the
// reason it now waits for, so Job.reason shows both.
std::string RetryNote(const std::string& reason) {
  const size_t at = reason.find(kRetrying);
  return at == std::string::npos ? std::string() : reason.substr(0, at + sizeof(kRetrying) - 1);
}

}  // namespace

bool JobIsFinal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED ||
         state == v1::JOB_STATE_CANCELLED;
}

PlacementPlan PlanPlacement(std::vector<QueuedJob> queued, int32_t idle_workers) {
  std::stable_sort(queued.begin(), queued.end(), [](const QueuedJob& a, const QueuedJob& b) {
    if (a.priority != b.priority) return a.priority > b.priority;
    return a.number < b.number;
  });
  PlacementPlan plan;
  std::string blocked_by;  // reason of the first job that could not start
  for (const QueuedJob& q : queued) {
    if (!blocked_by.empty()) {
      plan.reasons[q.job_id] = blocked_by;
      continue;
    }
    if (idle_workers >= q.min_workers) {
      const int32_t n = std::min(q.max_workers, idle_workers);
      plan.starts.emplace_back(q.job_id, n);
      idle_workers -= n;
      continue;
    }
    const std::string reason =
        absl::StrCat("needs ", WorkerCount(q.min_workers), ", ", idle_workers, " idle");
    plan.reasons[q.job_id] = reason;
    blocked_by = absl::StrCat("waiting behind ", q.job_id, " (", reason, ")");
  }
  return plan;
}

Scheduler::Scheduler(Store* store, SchedulerOptions options)
    : store_(store), options_(std::move(options)) {
  if (!options_.now_ms) {
    options_.now_ms = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
}

absl::StatusOr<std::unique_ptr<Scheduler>> Scheduler::Create(Store* store,
                                                             SchedulerOptions options) {
  std::unique_ptr<Scheduler> s(new Scheduler(store, std::move(options)));
  std::vector<std::string> notes;
  {
    absl::MutexLock lock(&s->mu_);
    ANVIL_RETURN_IF_ERROR(s->LoadLocked());
    s->ScheduleLocked();
    ANVIL_RETURN_IF_ERROR(s->CommitLocked());
    notes = s->TakeNotificationsLocked();
  }
  s->Fire(notes);
  return s;
}

absl::Status Scheduler::LoadLocked() {
  jobs_.clear();
  job_numbers_.clear();
  request_ids_.clear();
  tasks_.clear();
  workers_.clear();
  worker_names_.clear();
  dirty_jobs_.clear();
  dirty_tasks_.clear();
  dirty_workers_.clear();
  pending_ = Batch();
  ANVIL_ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->LoadJobs());
  for (JobRecord& r : jobs) {
    job_numbers_[r.job.job_id()] = r.number;
    if (!r.job.request_id().empty()) request_ids_[r.job.request_id()] = r.number;
    jobs_[r.number] = std::move(r);
  }
  ANVIL_ASSIGN_OR_RETURN(std::vector<TaskRecord> tasks, store_->LoadActiveTasks());
  for (TaskRecord& t : tasks) tasks_[t.task.task_id()] = std::move(t);
  ANVIL_ASSIGN_OR_RETURN(std::vector<WorkerRecord> workers, store_->LoadWorkers());
  for (WorkerRecord& w : workers) {
    int64_t n = 0;
    if (absl::StartsWith(w.worker_id, "worker-") &&
        absl::SimpleAtoi(absl::string_view(w.worker_id).substr(7), &n)) {
      next_worker_number_ = std::max(next_worker_number_, n + 1);
    }
    worker_names_[w.name] = w.worker_id;
    // The grace period: a worker alive before a restart has dead_after_ms from now to be heard.
    if (w.state != WorkerState::kDead) w.last_heartbeat_ms = Now();
    workers_[w.worker_id] = std::move(w);
  }
  return absl::OkStatus();
}

absl::Status Scheduler::CommitLocked() {
  Batch batch = std::move(pending_);
  pending_ = Batch();
  for (int64_t n : dirty_jobs_) batch.jobs.push_back(jobs_.at(n));
  for (const std::string& id : dirty_tasks_) batch.tasks.push_back(tasks_.at(id));
  for (const std::string& id : dirty_workers_) batch.workers.push_back(workers_.at(id));
  dirty_jobs_.clear();
  dirty_tasks_.clear();
  dirty_workers_.clear();
  absl::Status s = store_->Apply(batch);
  if (!s.ok()) {
    to_notify_.clear();
    absl::Status reload = LoadLocked();
    if (!reload.ok()) return absl::InternalError(absl::StrCat(s.message(), "; ", reload.message()));
    return s;
  }
  for (const v1::JobEvent& e : batch.events) to_notify_.push_back("job/" + e.job_id());
  return absl::OkStatus();
}

std::vector<std::string> Scheduler::TakeNotificationsLocked() {
  std::vector<std::string> keys = std::move(to_notify_);
  to_notify_.clear();
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

void Scheduler::Fire(const std::vector<std::string>& keys) {
  if (!options_.notify) return;
  for (const std::string& k : keys) options_.notify(k);
}

void Scheduler::TouchJob(JobRecord& job) {
  job.job.set_updated_unix_ms(Now());
  dirty_jobs_.insert(job.number);
}

JobRecord* Scheduler::FindJobLocked(const std::string& job_id) {
  auto it = job_numbers_.find(job_id);
  return it == job_numbers_.end() ? nullptr : &jobs_.at(it->second);
}

void Scheduler::AddEventLocked(const std::string& job_id, v1::JobEvent event) {
  event.set_job_id(job_id);
  event.set_time_unix_ms(Now());
  pending_.events.push_back(std::move(event));
}

void Scheduler::SetStateLocked(JobRecord& job, v1::JobState state, const std::string& reason) {
  job.job.set_state(state);
  job.job.set_reason(reason);
  TouchJob(job);
  v1::JobEvent e;
  v1::StateChange* sc = e.mutable_state();
  sc->set_state(state);
  sc->set_reason(reason);
  sc->set_attempt(job.job.attempt());
  *sc->mutable_worker_ids() = job.job.worker_ids();
  AddEventLocked(job.job.job_id(), std::move(e));
}

std::vector<TaskRecord*> Scheduler::AttemptTasksLocked(const JobRecord& job) {
  std::vector<TaskRecord*> out;
  for (auto& [id, t] : tasks_) {
    if (t.task.job_id() == job.job.job_id() && t.task.attempt() == job.job.attempt()) {
      out.push_back(&t);
    }
  }
  std::sort(out.begin(), out.end(),
            [](TaskRecord* a, TaskRecord* b) { return a->task.rank() < b->task.rank(); });
  return out;
}

void Scheduler::ScheduleLocked() {
  std::vector<std::string> idle;
  for (const auto& [id, w] : workers_) {
    if (w.state == WorkerState::kIdle) idle.push_back(id);
  }
  std::vector<QueuedJob> queued;
  for (const auto& [n, r] : jobs_) {
    if (r.job.state() != v1::JOB_STATE_QUEUED) continue;
    const v1::JobSpec& spec = r.job.spec();
    QueuedJob q{r.job.job_id(), spec.priority(), n, std::max(1, spec.min_workers()), 0};
    q.max_workers = std::max(q.min_workers, spec.max_workers());
    queued.push_back(q);
  }
  if (queued.empty()) return;
  const PlacementPlan plan = PlanPlacement(queued, static_cast<int32_t>(idle.size()));
  for (const auto& [job_id, n] : plan.starts) StartAttemptLocked(*FindJobLocked(job_id), n);
  for (const auto& [job_id, wait] : plan.reasons) {
    JobRecord& job = *FindJobLocked(job_id);
    const std::string note = RetryNote(job.job.reason());
    const std::string reason = note.empty() ? wait : absl::StrCat(note, "; ", wait);
    if (job.job.reason() != reason) {
      job.job.set_reason(reason);
      TouchJob(job);
    }
  }
}

void Scheduler::StartAttemptLocked(JobRecord& job, int32_t n) {
  v1::Job& j = job.job;
  j.set_attempt(j.attempt() + 1);
  j.clear_worker_ids();
  j.clear_progress();  // the attempt reports its own steps (from its checkpoint on)
  const std::string ns = absl::StrCat(j.job_id(), "/a", j.attempt());
  int32_t rank = 0;
  // Idle workers in id order: deterministic, so tests and logs are reproducible.
  for (auto& [id, w] : workers_) {
    if (rank == n) break;
    if (w.state != WorkerState::kIdle) continue;
    TaskRecord t;
    t.task.set_task_id(absl::StrCat(j.job_id(), "-a", j.attempt(), "-r", rank));
    t.task.set_job_id(j.job_id());
    t.task.set_attempt(j.attempt());
    t.task.set_rank(rank);
    t.task.set_world_size(n);
    t.task.set_rendezvous_namespace(ns);
    t.worker_id = id;
    t.state = TaskState::kAssigned;
    w.state = WorkerState::kBusy;
    w.task_id = t.task.task_id();
    TouchWorker(w);
    TouchTask(t);
    to_notify_.push_back("worker/" + id);
    j.add_worker_ids(id);
    tasks_[t.task.task_id()] = std::move(t);
    ++rank;
  }
  SetStateLocked(job, v1::JOB_STATE_SCHEDULED, "");
}

void Scheduler::ReleaseTaskLocked(TaskRecord& task, TaskState state, const std::string& error) {
  task.state = state;
  task.error = error;
  TouchTask(task);
  auto it = workers_.find(task.worker_id);
  if (it == workers_.end() || it->second.task_id != task.task.task_id()) return;
  WorkerRecord& w = it->second;
  w.task_id.clear();
  if (w.state == WorkerState::kBusy) w.state = WorkerState::kIdle;
  TouchWorker(w);
}

void Scheduler::StopAttemptLocked(JobRecord& job) {
  for (TaskRecord* t : AttemptTasksLocked(job)) {
    if (t->state == TaskState::kAssigned) {
      ReleaseTaskLocked(*t, TaskState::kStopped, "the attempt ended before the task started");
    } else if (t->state == TaskState::kRunning) {
      t->state = TaskState::kStopRequested;
      TouchTask(*t);
    }
  }
  if (job.job.attempt() > 0) {
    pending_.drop_rendezvous_namespaces.push_back(
        absl::StrCat(job.job.job_id(), "/a", job.job.attempt()));
  }
}

void Scheduler::FailAttemptLocked(JobRecord& job, const std::string& cause) {
  StopAttemptLocked(job);
  const v1::JobSpec& spec = job.job.spec();
  const int32_t max_retries = spec.has_max_retries() ? spec.max_retries() : kDefaultMaxRetries;
  const std::string head = absl::StrCat("attempt ", job.job.attempt(), " failed: ", cause);
  if (job.retries_used < max_retries) {
    ++job.retries_used;
    SetStateLocked(job, v1::JOB_STATE_QUEUED, head + kRetrying);
  } else {
    SetStateLocked(job, v1::JOB_STATE_FAILED, head);
  }
}

absl::StatusOr<v1::Job> Scheduler::SubmitJob(const std::string& request_id,
                                             const v1::JobSpec& spec) {
  std::vector<std::string> notes;
  v1::Job out;
  {
    absl::MutexLock lock(&mu_);
    if (!request_id.empty()) {
      auto it = request_ids_.find(request_id);
      if (it != request_ids_.end()) return jobs_.at(it->second).job;
    }
    int64_t unfinished = 0;
    for (const auto& [n, j] : jobs_) {
      const v1::JobState st = j.job.state();
      unfinished += st == v1::JOB_STATE_QUEUED || st == v1::JOB_STATE_SCHEDULED ||
                    st == v1::JOB_STATE_RUNNING;
    }
    if (unfinished >= options_.max_unfinished_jobs) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the coordinator holds ", unfinished, " unfinished jobs, its limit; "
                       "submit again when some have finished"));
    }
    JobRecord r;
    r.number = jobs_.empty() ? 1 : jobs_.rbegin()->first + 1;
    r.job.set_job_id(JobIdFromNumber(r.number));
    r.job.set_request_id(request_id);
    *r.job.mutable_spec() = spec;
    r.job.set_created_unix_ms(Now());
    const int64_t number = r.number;
    job_numbers_[r.job.job_id()] = number;
    if (!request_id.empty()) request_ids_[request_id] = number;
    JobRecord& job = jobs_[number] = std::move(r);
    SetStateLocked(job, v1::JOB_STATE_QUEUED, "submitted");
    ScheduleLocked();
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    out = jobs_.at(number).job;
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return out;
}

absl::StatusOr<v1::Job> Scheduler::GetJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  JobRecord* job = FindJobLocked(job_id);
  if (job == nullptr) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
  return job->job;
}

absl::StatusOr<JobPage> Scheduler::ListJobs(const std::vector<v1::JobState>& states,
                                            int32_t page_size, const std::string& page_token) {
  if (page_size <= 0) page_size = 50;
  page_size = std::min(page_size, 1000);
  int64_t before = INT64_MAX;
  if (!page_token.empty()) {
    std::string raw;
    if (!absl::WebSafeBase64Unescape(page_token, &raw) ||
        !absl::StartsWith(raw, kPageTokenPrefix) ||
        !absl::SimpleAtoi(absl::string_view(raw).substr(sizeof(kPageTokenPrefix) - 1),
                          &before) ||
        before <= 0) {
      return absl::InvalidArgumentError("page_token: not a token from a ListJobs response");
    }
  }
  absl::MutexLock lock(&mu_);
  JobPage page;
  for (auto it = jobs_.lower_bound(before); it != jobs_.begin();) {
    --it;
    const v1::Job& j = it->second.job;
    if (!states.empty() && std::find(states.begin(), states.end(), j.state()) == states.end()) {
      continue;
    }
    if (static_cast<int32_t>(page.jobs.size()) == page_size) {
      // One more matches: there is a next page, starting below the last job returned.
      page.next_page_token = absl::WebSafeBase64Escape(absl::StrCat(
          kPageTokenPrefix, job_numbers_.at(page.jobs.back().job_id())));
      break;
    }
    page.jobs.push_back(j);
  }
  return page;
}

absl::StatusOr<v1::Job> Scheduler::CancelJob(const std::string& job_id) {
  std::vector<std::string> notes;
  v1::Job out;
  {
    absl::MutexLock lock(&mu_);
    JobRecord* job = FindJobLocked(job_id);
    if (job == nullptr) return absl::NotFoundError(absl::StrCat("job ", job_id, " not found"));
    if (JobIsFinal(job->job.state())) return job->job;
    if (job->job.state() != v1::JOB_STATE_QUEUED) StopAttemptLocked(*job);
    SetStateLocked(*job, v1::JOB_STATE_CANCELLED, "cancelled");
    ScheduleLocked();
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    out = FindJobLocked(job_id)->job;
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return out;
}

std::vector<WorkerRecord> Scheduler::Workers() {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, w] : workers_) out.push_back(w);
  return out;
}

std::optional<TaskRecord> Scheduler::Task(const std::string& task_id) {
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find(task_id);
  if (it == tasks_.end()) return std::nullopt;
  return it->second;
}

}  // namespace anvil::coordinator
