#include "coordinator/store.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coordinator/sqlite_util.h"
#include "kernels/core/status_macros.h"

namespace anvil::coordinator {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs(
  number INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  request_id TEXT NOT NULL,
  spec BLOB NOT NULL,            -- serialized anvil.v1.JobSpec
  state INTEGER NOT NULL,        -- anvil.v1.JobState
  reason TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  priority INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  progress BLOB NOT NULL,        -- serialized anvil.v1.Progress
  lists BLOB NOT NULL,           -- anvil.v1.Job holding only worker_ids and outputs
  retries_used INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_request_id ON jobs(request_id) WHERE request_id != '';
CREATE TABLE IF NOT EXISTS tasks(
  task_id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  rank INTEGER NOT NULL,
  world_size INTEGER NOT NULL,
  rendezvous_namespace TEXT NOT NULL,
  worker_id TEXT NOT NULL,
  state INTEGER NOT NULL,
  error TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state);
CREATE TABLE IF NOT EXISTS events(
  job_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  event BLOB NOT NULL,           -- serialized anvil.v1.JobEvent
  PRIMARY KEY(job_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workers(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  devices BLOB NOT NULL,         -- anvil.v1.RegisterRequest holding only devices
  last_heartbeat_ms INTEGER NOT NULL,
  state INTEGER NOT NULL,
  task_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rendezvous(
  namespace TEXT NOT NULL,
  key TEXT NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY(namespace, key)) WITHOUT ROWID;
)sql";

using sql::Exec;
using sql::SqlError;
using sql::Stmt;

absl::Status ParseInto(google::protobuf::MessageLite* msg, const std::string& bytes,
                       absl::string_view what) {
  if (!msg->ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat("store: cannot parse stored ", what));
  }
  return absl::OkStatus();
}

}  // namespace

bool TaskIsActive(TaskState s) {
  return s == TaskState::kAssigned || s == TaskState::kRunning || s == TaskState::kStopRequested;
}

std::string JobIdFromNumber(int64_t number) { return absl::StrFormat("job-%06d", number); }

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    std::string msg = absl::StrCat(path, ": cannot open database: ",
                                   db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return absl::FailedPreconditionError(msg);
  }
  std::unique_ptr<Store> store(new Store(db));
  // WAL + synchronous=FULL: a committed transaction is on disk before Apply returns, so an
  // acknowledged RPC survives power loss, not only kill -9.
  sqlite3_busy_timeout(db, 5000);
  ANVIL_RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL"));
  ANVIL_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous=FULL"));
  ANVIL_RETURN_IF_ERROR(Exec(db, kSchema));
  return store;
}

Store::~Store() {
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

absl::Status Store::Apply(Batch& batch) {
  if (batch.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  ANVIL_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  absl::Status s = ApplyLocked(batch);
  if (s.ok()) s = Exec(db_, "COMMIT");
  if (!s.ok()) {
    Exec(db_, "ROLLBACK").IgnoreError();  // fails harmlessly when COMMIT already rolled back
    for (auto& e : batch.events) e.set_seq(0);
  }
  return s;
}

absl::Status Store::ApplyLocked(Batch& batch) {
  // Upserts on the primary key only: INSERT OR REPLACE would silently delete another row that
  // holds the same request_id or worker name instead of failing.
  for (const JobRecord& r : batch.jobs) {
    const v1::Job& j = r.job;
    v1::Job lists;
    *lists.mutable_worker_ids() = j.worker_ids();
    *lists.mutable_outputs() = j.outputs();
    Stmt st(db_,
            "INSERT INTO jobs(number, id, request_id, spec, state, reason, attempt, "
            "priority, created_ms, updated_ms, progress, lists, retries_used) "
            "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(number) DO UPDATE SET "
            "state = excluded.state, reason = excluded.reason, attempt = excluded.attempt, "
            "updated_ms = excluded.updated_ms, progress = excluded.progress, "
            "lists = excluded.lists, retries_used = excluded.retries_used");
    st.Bind(r.number).Bind(j.job_id()).Bind(j.request_id()).BindBlob(j.spec().SerializeAsString());
    st.Bind(j.state()).Bind(j.reason()).Bind(j.attempt()).Bind(j.spec().priority());
    st.Bind(j.created_unix_ms()).Bind(j.updated_unix_ms());
    st.BindBlob(j.progress().SerializeAsString()).BindBlob(lists.SerializeAsString());
    st.Bind(r.retries_used);
    ANVIL_RETURN_IF_ERROR(st.Run());
  }
  for (const TaskRecord& r : batch.tasks) {
    Stmt st(db_,
            "INSERT OR REPLACE INTO tasks(task_id, job_id, attempt, rank, world_size, "
            "rendezvous_namespace, worker_id, state, error) VALUES(?,?,?,?,?,?,?,?,?)");
    st.Bind(r.task.task_id()).Bind(r.task.job_id()).Bind(r.task.attempt()).Bind(r.task.rank());
    st.Bind(r.task.world_size()).Bind(r.task.rendezvous_namespace()).Bind(r.worker_id);
    st.Bind(static_cast<int64_t>(r.state)).Bind(r.error);
    ANVIL_RETURN_IF_ERROR(st.Run());
  }
  for (const WorkerRecord& r : batch.workers) {
    v1::RegisterRequest devices;
    for (const auto& d : r.devices) *devices.add_devices() = d;
    Stmt st(db_,
            "INSERT INTO workers(id, name, devices, last_heartbeat_ms, state, task_id) "
            "VALUES(?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET devices = excluded.devices, "
            "last_heartbeat_ms = excluded.last_heartbeat_ms, state = excluded.state, "
            "task_id = excluded.task_id");
    st.Bind(r.worker_id).Bind(r.name).BindBlob(devices.SerializeAsString());
    st.Bind(r.last_heartbeat_ms).Bind(static_cast<int64_t>(r.state)).Bind(r.task_id);
    ANVIL_RETURN_IF_ERROR(st.Run());
  }
  for (v1::JobEvent& e : batch.events) {
    // The seq comes from the table inside the transaction, so it cannot skip or repeat.
    Stmt last(db_, "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = ?");
    last.Bind(e.job_id());
    if (!last.ok() || !last.Step()) return SqlError(db_, "last event seq");
    e.set_seq(last.Int(0) + 1);
    Stmt st(db_, "INSERT INTO events(job_id, seq, time_ms, event) VALUES(?,?,?,?)");
    st.Bind(e.job_id()).Bind(e.seq()).Bind(e.time_unix_ms()).BindBlob(e.SerializeAsString());
    ANVIL_RETURN_IF_ERROR(st.Run());
  }
  for (const std::string& ns : batch.drop_rendezvous_namespaces) {
    Stmt st(db_, "DELETE FROM rendezvous WHERE namespace = ?");
    st.Bind(ns);
    ANVIL_RETURN_IF_ERROR(st.Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobRecord>> Store::LoadJobs() {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "SELECT number, id, request_id, spec, state, reason, attempt, created_ms, updated_ms, "
          "progress, lists, retries_used FROM jobs ORDER BY number");
  std::vector<JobRecord> out;
  while (st.ok() && st.Step()) {
    JobRecord r;
    r.number = st.Int(0);
    v1::Job& j = r.job;
    ANVIL_RETURN_IF_ERROR(ParseInto(&j, st.Text(10), "job lists"));
    j.set_job_id(st.Text(1));
    j.set_request_id(st.Text(2));
    ANVIL_RETURN_IF_ERROR(ParseInto(j.mutable_spec(), st.Text(3), "job spec"));
    j.set_state(static_cast<v1::JobState>(st.Int(4)));
    j.set_reason(st.Text(5));
    j.set_attempt(static_cast<int32_t>(st.Int(6)));
    j.set_created_unix_ms(st.Int(7));
    j.set_updated_unix_ms(st.Int(8));
    ANVIL_RETURN_IF_ERROR(ParseInto(j.mutable_progress(), st.Text(9), "job progress"));
    r.retries_used = static_cast<int32_t>(st.Int(11));
    out.push_back(std::move(r));
  }
  ANVIL_RETURN_IF_ERROR(st.status());
  return out;
}

absl::StatusOr<std::vector<TaskRecord>> Store::LoadActiveTasks() {
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "SELECT task_id, job_id, attempt, rank, world_size, rendezvous_namespace, worker_id, "
          "state, error FROM tasks WHERE state IN (?, ?, ?) OR EXISTS (SELECT 1 FROM jobs "
          "WHERE jobs.id = tasks.job_id AND jobs.attempt = tasks.attempt AND jobs.state IN (?, ?, ?)) "
          "ORDER BY task_id");
  st.Bind(static_cast<int64_t>(TaskState::kAssigned))
      .Bind(static_cast<int64_t>(TaskState::kRunning))
      .Bind(static_cast<int64_t>(TaskState::kStopRequested))
      .Bind(static_cast<int64_t>(v1::JOB_STATE_QUEUED))
      .Bind(static_cast<int64_t>(v1::JOB_STATE_SCHEDULED))
      .Bind(static_cast<int64_t>(v1::JOB_STATE_RUNNING));
  std::vector<TaskRecord> out;
  while (st.ok() && st.Step()) {
    TaskRecord r;
    r.task.set_task_id(st.Text(0));
    r.task.set_job_id(st.Text(1));
    r.task.set_attempt(static_cast<int32_t>(st.Int(2)));
    r.task.set_rank(static_cast<int32_t>(st.Int(3)));
    r.task.set_world_size(static_cast<int32_t>(st.Int(4)));
    r.task.set_rendezvous_namespace(st.Text(5));
    r.worker_id = st.Text(6);
    r.state = static_cast<TaskState>(st.Int(7));
    r.error = st.Text(8);
    out.push_back(std::move(r));
  }
  ANVIL_RETURN_IF_ERROR(st.status());
  return out;
}

absl::StatusOr<std::vector<WorkerRecord>> Store::LoadWorkers() {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, "SELECT id, name, devices, last_heartbeat_ms, state, task_id FROM workers "
               "ORDER BY id");
  std::vector<WorkerRecord> out;
  while (st.ok() && st.Step()) {
    WorkerRecord r;
    r.worker_id = st.Text(0);
    r.name = st.Text(1);
    v1::RegisterRequest devices;
    ANVIL_RETURN_IF_ERROR(ParseInto(&devices, st.Text(2), "worker devices"));
    r.devices.assign(devices.devices().begin(), devices.devices().end());
    r.last_heartbeat_ms = st.Int(3);
    r.state = static_cast<WorkerState>(st.Int(4));
    r.task_id = st.Text(5);
    out.push_back(std::move(r));
  }
  ANVIL_RETURN_IF_ERROR(st.status());
  return out;
}

absl::StatusOr<std::vector<v1::JobEvent>> Store::ReadEvents(const std::string& job_id,
                                                            int64_t after_seq, int limit) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, "SELECT event FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?");
  st.Bind(job_id).Bind(after_seq).Bind(static_cast<int64_t>(limit));
  std::vector<v1::JobEvent> out;
  while (st.ok() && st.Step()) {
    v1::JobEvent e;
    ANVIL_RETURN_IF_ERROR(ParseInto(&e, st.Text(0), "job event"));
    out.push_back(std::move(e));
  }
  ANVIL_RETURN_IF_ERROR(st.status());
  return out;
}

absl::Status Store::SetKey(const std::string& ns, const std::string& key,
                           const std::string& value) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, "INSERT OR REPLACE INTO rendezvous(namespace, key, value) VALUES(?,?,?)");
  st.Bind(ns).Bind(key).BindBlob(value);
  return st.Run();
}

absl::StatusOr<std::optional<std::string>> Store::GetKey(const std::string& ns,
                                                         const std::string& key) {
  absl::MutexLock lock(&mu_);
  Stmt st(db_, "SELECT value FROM rendezvous WHERE namespace = ? AND key = ?");
  st.Bind(ns).Bind(key);
  if (st.ok() && st.Step()) return std::optional<std::string>(st.Text(0));
  ANVIL_RETURN_IF_ERROR(st.status());
  return std::optional<std::string>();
}

}  // namespace anvil::coordinator
