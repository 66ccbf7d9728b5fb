// Scheduler: the worker side — registry, heartbeats and death, handing out tasks, progress and
// completion. Job-side rules (attempts, retries, placement) are in scheduler.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/scheduler.h"
#include "kernels/core/status_macros.h"

namespace anvil::coordinator {
namespace {

// A runaway task must not fill the database with logs: lines per report and bytes per line.
constexpr int kMaxLogLinesPerReport = 1000;
constexpr size_t kMaxLogLineBytes = 16 * 1024;

}  // namespace

absl::StatusOr<v1::RegisterResponse> Scheduler::RegisterWorker(
    const std::string& name, const std::vector<v1::Device>& devices) {
  if (name.empty()) return absl::InvalidArgumentError("name: must not be empty");
  std::vector<std::string> notes;
  v1::RegisterResponse response;
  {
    absl::MutexLock lock(&mu_);
    auto known = worker_names_.find(name);
    WorkerRecord* w;
    if (known != worker_names_.end()) {
      w = &workers_.at(known->second);
      // A worker registering again was restarted: a task it was running is lost with the old
      // process. One it had not picked up yet it can still poll.
      auto t = tasks_.find(w->task_id);
      if (t != tasks_.end() && t->second.state == TaskState::kRunning) {
        const std::string cause =
            absl::StrCat("rank ", t->second.task.rank(), " (", w->worker_id, ", ", name,
                         "): the worker restarted");
        ReleaseTaskLocked(t->second, TaskState::kFailed, cause);
        FailAttemptLocked(*FindJobLocked(t->second.task.job_id()), cause);
      } else if (t != tasks_.end() && t->second.state == TaskState::kStopRequested) {
        ReleaseTaskLocked(t->second, TaskState::kStopped, "the worker restarted");
      }
      w->state = w->task_id.empty() ? WorkerState::kIdle : WorkerState::kBusy;
    } else {
      const std::string id = absl::StrFormat("worker-%06d", next_worker_number_++);
      w = &workers_[id];
      w->worker_id = id;
      w->name = name;
      worker_names_[name] = id;
    }
    w->devices = devices;
    w->last_heartbeat_ms = Now();
    TouchWorker(*w);
    response.set_worker_id(w->worker_id);
    response.set_heartbeat_interval_ms(options_.heartbeat_interval_ms);
    response.set_dead_after_ms(options_.dead_after_ms);
    ScheduleLocked();
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return response;
}

absl::StatusOr<v1::HeartbeatResponse> Scheduler::Heartbeat(const std::string& worker_id,
                                                           const std::string& task_id) {
  std::vector<std::string> notes;
  v1::HeartbeatResponse response;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker_id);
    if (it == workers_.end() || it->second.state == WorkerState::kDead) {
      response.set_reregister(true);
      return response;
    }
    WorkerRecord& w = it->second;
    // Heartbeat times stay in memory: writing one row per beat would cost a sync each, and a
    // restart grants every worker a fresh grace period anyway.
    w.last_heartbeat_ms = Now();
    if (!task_id.empty()) {
      auto t = tasks_.find(task_id);
      // Stop a task the attempt no longer wants, or one that is not this worker's current task.
      response.set_stop_task(t == tasks_.end() || t->second.worker_id != worker_id ||
                             w.task_id != task_id ||
                             t->second.state == TaskState::kStopRequested);
    } else if (!w.task_id.empty()) {
      // Idle while told to stop: the stop is done and the worker is free.
      auto t = tasks_.find(w.task_id);
      if (t != tasks_.end() && t->second.state == TaskState::kStopRequested) {
        ReleaseTaskLocked(t->second, TaskState::kStopped, "stopped");
        ScheduleLocked();
      }
    }
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return response;
}

absl::StatusOr<std::optional<v1::Task>> Scheduler::TakeTask(const std::string& worker_id) {
  std::vector<std::string> notes;
  std::optional<v1::Task> out;
  {
    absl::MutexLock lock(&mu_);
    auto it = workers_.find(worker_id);
    if (it == workers_.end() || it->second.state == WorkerState::kDead) {
      return absl::NotFoundError(
          absl::StrCat("worker ", worker_id, " is not registered (or was declared dead): "
                       "register again"));
    }
    WorkerRecord& w = it->second;
    w.last_heartbeat_ms = Now();
    auto t = tasks_.find(w.task_id);
    if (t == tasks_.end() ||
        (t->second.state != TaskState::kAssigned && t->second.state != TaskState::kRunning)) {
      return out;
    }
    TaskRecord& task = t->second;
    JobRecord& job = *FindJobLocked(task.task.job_id());
    if (task.state == TaskState::kAssigned) {
      task.state = TaskState::kRunning;
      TouchTask(task);
      std::vector<TaskRecord*> all = AttemptTasksLocked(job);
      const bool all_running = std::all_of(all.begin(), all.end(), [](TaskRecord* r) {
        return r->state == TaskState::kRunning;
      });
      if (all_running && job.job.state() == v1::JOB_STATE_SCHEDULED) {
        SetStateLocked(job, v1::JOB_STATE_RUNNING, "");
      }
    }
    // Handed out again when asked again: the response of an earlier poll may have been lost.
    out = task.task;
    *out->mutable_spec() = job.job.spec();
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return out;
}

absl::StatusOr<TaskRecord*> Scheduler::OwnedTaskLocked(const std::string& task_id,
                                                       const std::string& worker_id) {
  auto t = tasks_.find(task_id);
  if (t == tasks_.end()) return absl::NotFoundError(absl::StrCat("task ", task_id, " not found"));
  if (t->second.worker_id != worker_id) {
    return absl::FailedPreconditionError(absl::StrCat("task ", task_id, " belongs to ",
                                                      t->second.worker_id, ", not ", worker_id));
  }
  return &t->second;
}

absl::StatusOr<bool> Scheduler::ReportProgress(const v1::ReportProgressRequest& request) {
  std::vector<std::string> notes;
  {
    absl::MutexLock lock(&mu_);
    ANVIL_ASSIGN_OR_RETURN(TaskRecord * found,
                           OwnedTaskLocked(request.task_id(), request.worker_id()));
    TaskRecord& task = *found;
    auto w = workers_.find(task.worker_id);
    if (w != workers_.end() && w->second.state != WorkerState::kDead) {
      w->second.last_heartbeat_ms = Now();
    }
    if (task.state != TaskState::kAssigned && task.state != TaskState::kRunning) return true;
    JobRecord& job = *FindJobLocked(task.task.job_id());
    // A report the coordinator already has (a retry whose answer was lost, a backlog resent
    // after a restart) adds nothing: steps only move forward within an attempt, and a new
    // attempt starts from a cleared progress.
    if (task.task.rank() == 0 && request.has_progress() &&
        request.progress().step() > job.job.progress().step()) {
      *job.job.mutable_progress() = request.progress();
      TouchJob(job);
      v1::JobEvent e;
      *e.mutable_progress() = request.progress();
      AddEventLocked(job.job.job_id(), std::move(e));
    }
    const int lines = std::min(request.log_lines_size(), kMaxLogLinesPerReport);
    for (int i = 0; i < lines; ++i) {
      v1::JobEvent e;
      e.mutable_log()->set_worker_id(task.worker_id);
      e.mutable_log()->set_text(request.log_lines(i).substr(0, kMaxLogLineBytes));
      AddEventLocked(job.job.job_id(), std::move(e));
    }
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return false;
}

absl::Status Scheduler::CompleteTask(const v1::CompleteTaskRequest& request) {
  std::vector<std::string> notes;
  {
    absl::MutexLock lock(&mu_);
    ANVIL_ASSIGN_OR_RETURN(TaskRecord * found,
                           OwnedTaskLocked(request.task_id(), request.worker_id()));
    TaskRecord& task = *found;
    if (!TaskIsActive(task.state)) return absl::OkStatus();  // a repeated report
    if (task.state == TaskState::kStopRequested) {
      ReleaseTaskLocked(task, TaskState::kStopped,
                        request.ok() ? "stopped" : request.error());
    } else {
      // Assigned or running: by the invariant of StopAttemptLocked, the job's current attempt.
      JobRecord& job = *FindJobLocked(task.task.job_id());
      if (request.ok()) {
        ReleaseTaskLocked(task, TaskState::kSucceeded, "");
        if (task.task.rank() == 0) {
          *job.job.mutable_outputs() = request.outputs();
          TouchJob(job);
        }
        std::vector<TaskRecord*> all = AttemptTasksLocked(job);
        if (std::all_of(all.begin(), all.end(), [](TaskRecord* r) {
              return r->state == TaskState::kSucceeded;
            })) {
          pending_.drop_rendezvous_namespaces.push_back(task.task.rendezvous_namespace());
          SetStateLocked(job, v1::JOB_STATE_SUCCEEDED, "");
        }
      } else {
        const std::string error = request.error().empty() ? "failed" : request.error();
        ReleaseTaskLocked(task, TaskState::kFailed, error);
        FailAttemptLocked(job, absl::StrCat("rank ", task.task.rank(), " (", task.worker_id,
                                            "): ", error));
      }
    }
    ScheduleLocked();
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return absl::OkStatus();
}

absl::Status Scheduler::CheckWorkers() {
  std::vector<std::string> notes;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = Now();
    bool changed = false;
    for (auto& [id, w] : workers_) {
      if (w.state == WorkerState::kDead || now - w.last_heartbeat_ms <= options_.dead_after_ms) {
        continue;
      }
      changed = true;
      w.state = WorkerState::kDead;
      TouchWorker(w);
      auto t = tasks_.find(w.task_id);
      if (t == tasks_.end()) continue;
      TaskRecord& task = t->second;
      const std::string cause =
          absl::StrCat("rank ", task.task.rank(), " (", id, ", ", w.name, "): no heartbeat for ",
                       now - w.last_heartbeat_ms, " ms, worker declared dead");
      if (task.state == TaskState::kStopRequested) {
        ReleaseTaskLocked(task, TaskState::kStopped, cause);
      } else if (TaskIsActive(task.state)) {
        ReleaseTaskLocked(task, TaskState::kFailed, cause);
        FailAttemptLocked(*FindJobLocked(task.task.job_id()), cause);
      }
    }
    if (!changed) return absl::OkStatus();
    ScheduleLocked();
    ANVIL_RETURN_IF_ERROR(CommitLocked());
    notes = TakeNotificationsLocked();
  }
  Fire(notes);
  return absl::OkStatus();
}

}  // namespace anvil::coordinator
