// The coordinator's rules: the job lifecycle (QUEUED -> SCHEDULED -> RUNNING -> final, with
// attempts and a retry budget), gang scheduling onto idle workers, the worker registry and its
// heartbeats. State lives in memory, loaded from the Store at start; every operation's changes go
// to the Store in one transaction before the operation returns. No gRPC here: the services are
// thin adapters, and the tests drive this class directly with a fake clock.
#ifndef ANVIL_COORDINATOR_SCHEDULER_H_
#define ANVIL_COORDINATOR_SCHEDULER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "anvil/v1/jobs.pb.h"
#include "anvil/v1/workers.pb.h"
#include "coordinator/store.h"

namespace anvil::coordinator {

// ---- Placement: pure, no state. ----

struct QueuedJob {
  std::string job_id;
  int32_t priority = 0;
  int64_t number = 0;  // creation order
  int32_t min_workers = 1;
  int32_t max_workers = 1;
};

struct PlacementPlan {
  std::vector<std::pair<std::string, int32_t>> starts;  // (job_id, workers), in start order
  std::map<std::string, std::string> reasons;           // every job that keeps waiting
};

// Highest priority first, FIFO (by number) within a priority. A job starts only when at least
// min_workers are idle and takes up to max_workers. Strict order: once a job cannot start, the
// jobs behind it wait too, so a large job is never starved by a stream of small ones.
PlacementPlan PlanPlacement(std::vector<QueuedJob> queued, int32_t idle_workers);

// ---- The scheduler. ----

struct SchedulerOptions {
  int64_t heartbeat_interval_ms = 1000;
  int64_t dead_after_ms = 5000;
  // Unfinished jobs (queued, scheduled, running) the coordinator holds at most: SubmitJob past
  // it is RESOURCE_EXHAUSTED, so a runaway client cannot grow the queue without bound.
  int64_t max_unfinished_jobs = 10000;
  std::function<int64_t()> now_ms;  // unset: the system clock
  // Called (without any lock held) after a change: "job/<job_id>" when the job has new events,
  // "worker/<worker_id>" when a task was assigned to the worker. Wakes long polls and watches.
  std::function<void(const std::string& key)> notify;
};

struct JobPage {
  std::vector<v1::Job> jobs;
  std::string next_page_token;
};

class Scheduler {
 public:
  // Loads the store's state. Workers not dead get a grace period of dead_after_ms from now to
  // heartbeat again, so a restarted coordinator keeps attempts whose workers reconnect.
  static absl::StatusOr<std::unique_ptr<Scheduler>> Create(Store* store, SchedulerOptions options);

  // The spec must already be valid (rpc::ValidateJobSpec). Same non-empty request_id as an
  // existing job: that job, nothing created.
  absl::StatusOr<v1::Job> SubmitJob(const std::string& request_id, const v1::JobSpec& spec);
  absl::StatusOr<v1::Job> GetJob(const std::string& job_id);  // NotFound
  // Newest first. InvalidArgument for a page token this did not make.
  absl::StatusOr<JobPage> ListJobs(const std::vector<v1::JobState>& states, int32_t page_size,
                                   const std::string& page_token);
  // A final job is returned unchanged.
  absl::StatusOr<v1::Job> CancelJob(const std::string& job_id);

  absl::StatusOr<v1::RegisterResponse> RegisterWorker(const std::string& name,
                                                      const std::vector<v1::Device>& devices);
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& worker_id,
                                                  const std::string& task_id);
  // The worker's task (with its spec) if one is assigned to it; marks it running. NotFound for
  // an unknown or dead worker (it must register again).
  absl::StatusOr<std::optional<v1::Task>> TakeTask(const std::string& worker_id);
  // Returns stop_task. NotFound for an unknown task.
  absl::StatusOr<bool> ReportProgress(const v1::ReportProgressRequest& request);
  absl::Status CompleteTask(const v1::CompleteTaskRequest& request);

  // Declares workers dead that have not been heard from for dead_after_ms; their attempts fail.
  absl::Status CheckWorkers();

  int64_t heartbeat_interval_ms() const { return options_.heartbeat_interval_ms; }
  int64_t dead_after_ms() const { return options_.dead_after_ms; }
  std::vector<WorkerRecord> Workers();  // by id, for tests and status
  std::optional<TaskRecord> Task(const std::string& task_id);

 private:
  Scheduler(Store* store, SchedulerOptions options);
  int64_t Now() const { return options_.now_ms(); }

  // Each public mutation: lock, change memory (marking what changed), then Commit, which writes
  // the marked records and new events in one transaction. When the write fails, memory is
  // reloaded from the store, so it never holds what was not stored.
  absl::Status CommitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LoadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Takes the keys to notify (under the lock); Fire calls options_.notify for them after unlock.
  std::vector<std::string> TakeNotificationsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Fire(const std::vector<std::string>& keys);

  void AddEventLocked(const std::string& job_id, v1::JobEvent event)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetStateLocked(JobRecord& job, v1::JobState state, const std::string& reason)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ScheduleLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartAttemptLocked(JobRecord& job, int32_t workers) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends the job's current attempt: tasks not yet picked up are dropped (their workers freed),
  // running ones are told to stop. The workers of stopping tasks stay busy until they report.
  void StopAttemptLocked(JobRecord& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailAttemptLocked(JobRecord& job, const std::string& cause)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task is over for its worker: the worker becomes idle (unless dead).
  void ReleaseTaskLocked(TaskRecord& task, TaskState state, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<TaskRecord*> AttemptTasksLocked(const JobRecord& job)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  JobRecord* FindJobLocked(const std::string& job_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The task `task_id` if `worker_id` runs it: NotFound / FailedPrecondition otherwise.
  absl::StatusOr<TaskRecord*> OwnedTaskLocked(const std::string& task_id,
                                              const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchJob(JobRecord& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchTask(const TaskRecord& t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    dirty_tasks_.insert(t.task.task_id());
  }
  void TouchWorker(const WorkerRecord& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    dirty_workers_.insert(w.worker_id);
  }

  Store* const store_;
  SchedulerOptions options_;

  absl::Mutex mu_;
  std::map<int64_t, JobRecord> jobs_ ABSL_GUARDED_BY(mu_);  // by number
  std::map<std::string, int64_t> job_numbers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> request_ids_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TaskRecord> tasks_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> worker_names_ ABSL_GUARDED_BY(mu_);  // name -> id
  int64_t next_worker_number_ ABSL_GUARDED_BY(mu_) = 1;
  // What the current operation changed, written by CommitLocked.
  std::set<int64_t> dirty_jobs_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirty_tasks_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> dirty_workers_ ABSL_GUARDED_BY(mu_);
  Batch pending_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> to_notify_ ABSL_GUARDED_BY(mu_);
};

bool JobIsFinal(v1::JobState state);

}  // namespace anvil::coordinator

#endif  // ANVIL_COORDINATOR_SCHEDULER_H_
