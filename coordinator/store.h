// The coordinator's durable state in one SQLite file (WAL): jobs, attempts' tasks, job events,
// workers and rendezvous keys. The store knows rows, not rules: the scheduler decides what
// changes and hands every change of one operation to Apply, which writes it in one transaction,
// so a kill -9 at any moment loses nothing that was acknowledged and never half-applies a change.
// No gRPC here; protobuf messages travel as values and are stored serialized.
#ifndef ANVIL_COORDINATOR_STORE_H_
#define ANVIL_COORDINATOR_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "anvil/v1/jobs.pb.h"
#include "anvil/v1/workers.pb.h"

struct sqlite3;

namespace anvil::coordinator {

// A job as the API shows it, plus what only the coordinator needs.
struct JobRecord {
  v1::Job job;
  int64_t number = 0;        // the N of "job-00000N": creation order, FIFO tiebreak
  int32_t retries_used = 0;  // failed attempts already retried
};

// One rank of one attempt. The stored order of states is the lifecycle:
// assigned (waiting for the worker's poll) -> running -> succeeded | failed, or, when the attempt
// ends elsewhere, stop_requested (the worker is told to stop) -> stopped.
enum class TaskState : int {
  kAssigned = 1,
  kRunning = 2,
  kSucceeded = 3,
  kFailed = 4,
  kStopRequested = 5,
  kStopped = 6,
};
bool TaskIsActive(TaskState s);  // assigned, running or stop_requested: the worker is occupied

struct TaskRecord {
  v1::Task task;  // without spec (the job holds it); filled in when handed to a worker
  std::string worker_id;
  TaskState state = TaskState::kAssigned;
  std::string error;
};

enum class WorkerState : int { kIdle = 1, kBusy = 2, kDead = 3 };

struct WorkerRecord {
  std::string worker_id;
  std::string name;
  std::vector<v1::Device> devices;
  int64_t last_heartbeat_ms = 0;
  WorkerState state = WorkerState::kIdle;
  std::string task_id;  // when busy
};

// Everything one operation changes. Records are upserted by id; events are appended.
struct Batch {
  std::vector<JobRecord> jobs;
  std::vector<TaskRecord> tasks;
  std::vector<WorkerRecord> workers;
  // Appended with seq = the job's last seq + 1 (Apply fills in seq; time_unix_ms as given).
  std::vector<v1::JobEvent> events;
  std::vector<std::string> drop_rendezvous_namespaces;  // an attempt ended: its keys go

  bool empty() const {
    return jobs.empty() && tasks.empty() && workers.empty() && events.empty() &&
           drop_rendezvous_namespaces.empty();
  }
};

class Store {
 public:
  // Opens (creating when missing) the database at `path`; ":memory:" for a throwaway one.
  static absl::StatusOr<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Writes the batch in one transaction and sets each event's seq. A job whose non-empty
  // request_id is taken by another job is AlreadyExists (and nothing is written).
  absl::Status Apply(Batch& batch);

  absl::StatusOr<std::vector<JobRecord>> LoadJobs();  // by number
  // Tasks still occupying a worker (assigned, running, stop_requested) plus every task of the
  // current attempt of an unfinished job (a rank that succeeded before a restart still counts
  // towards its attempt's success); the rest is history and stays on disk only.
  absl::StatusOr<std::vector<TaskRecord>> LoadActiveTasks();
  absl::StatusOr<std::vector<WorkerRecord>> LoadWorkers();
  // Events of `job_id` with seq > after_seq, in order, at most `limit`.
  absl::StatusOr<std::vector<v1::JobEvent>> ReadEvents(const std::string& job_id,
                                                       int64_t after_seq, int limit);

  // Rendezvous keys (overwrite on set).
  absl::Status SetKey(const std::string& ns, const std::string& key, const std::string& value);
  absl::StatusOr<std::optional<std::string>> GetKey(const std::string& ns, const std::string& key);

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  absl::Status ApplyLocked(Batch& batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // One connection, serialized by mu_: a transaction must not interleave with another thread's.
  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
};

// "job-000001" for 1.
std::string JobIdFromNumber(int64_t number);

}  // namespace anvil::coordinator

#endif  // ANVIL_COORDINATOR_STORE_H_
