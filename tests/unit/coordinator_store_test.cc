// coordinator::Store: transactions, event seqs without gaps, request_id uniqueness, reopening
// the database keeps everything.
#include "coordinator/store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/testing/status_matchers.h"

namespace anvil::coordinator {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("coordinator_store_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "state.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static JobRecord Job(int64_t number, const std::string& request_id) {
    JobRecord r;
    r.number = number;
    r.job.set_job_id(JobIdFromNumber(number));
    r.job.set_request_id(request_id);
    r.job.mutable_spec()->set_name("n" + std::to_string(number));
    r.job.mutable_spec()->set_priority(3);
    r.job.mutable_spec()->mutable_finetune()->set_model("/tmp/m.gguf");
    r.job.set_state(v1::JOB_STATE_QUEUED);
    r.job.set_reason("needs 2 workers, 1 idle");
    r.job.set_created_unix_ms(1000 + number);
    r.job.set_updated_unix_ms(2000 + number);
    return r;
  }
  static v1::JobEvent StateEvent(const std::string& job_id, v1::JobState state) {
    v1::JobEvent e;
    e.set_job_id(job_id);
    e.set_time_unix_ms(5);
    e.mutable_state()->set_state(state);
    return e;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(StoreTest, JobIdsAreZeroPadded) {
  EXPECT_EQ(JobIdFromNumber(1), "job-000001");
  EXPECT_EQ(JobIdFromNumber(1234567), "job-1234567");
}

TEST_F(StoreTest, EventSeqsCountFromOneWithoutGapsPerJob) {
  ANVIL_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path_));
  Batch b1;
  b1.jobs = {Job(1, ""), Job(2, "")};
  b1.events = {StateEvent("job-000001", v1::JOB_STATE_QUEUED),
               StateEvent("job-000002", v1::JOB_STATE_QUEUED),
               StateEvent("job-000001", v1::JOB_STATE_SCHEDULED)};
  ASSERT_THAT(store->Apply(b1), IsOk());
  EXPECT_EQ(b1.events[0].seq(), 1);
  EXPECT_EQ(b1.events[1].seq(), 1);
  EXPECT_EQ(b1.events[2].seq(), 2);
  Batch b2;
  b2.events = {StateEvent("job-000001", v1::JOB_STATE_RUNNING)};
  ASSERT_THAT(store->Apply(b2), IsOk());
  EXPECT_EQ(b2.events[0].seq(), 3);

  ANVIL_ASSERT_OK_AND_ASSIGN(auto events, store->ReadEvents("job-000001", 0, 100));
  ASSERT_EQ(events.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(events[i].seq(), i + 1);
  EXPECT_EQ(events[2].state().state(), v1::JOB_STATE_RUNNING);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto after, store->ReadEvents("job-000001", 1, 1));
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].seq(), 2);
}

TEST_F(StoreTest, DuplicateRequestIdWritesNothing) {
  ANVIL_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path_));
  Batch b1;
  b1.jobs = {Job(1, "req-a"), Job(2, "")};
  ASSERT_THAT(store->Apply(b1), IsOk());
  Batch b2;
  b2.jobs = {Job(3, "req-a")};
  b2.events = {StateEvent("job-000003", v1::JOB_STATE_QUEUED)};
  EXPECT_THAT(store->Apply(b2), StatusIs(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(b2.events[0].seq(), 0);
  // The whole batch rolled back: no job 3, no event.
  ANVIL_ASSERT_OK_AND_ASSIGN(auto jobs, store->LoadJobs());
  EXPECT_EQ(jobs.size(), 2u);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto events, store->ReadEvents("job-000003", 0, 10));
  EXPECT_TRUE(events.empty());
  // Empty request ids never collide.
  Batch b3;
  b3.jobs = {Job(4, "")};
  EXPECT_THAT(store->Apply(b3), IsOk());
}

TEST_F(StoreTest, ReopeningKeepsEverything) {
  {
    ANVIL_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path_));
    Batch b;
    JobRecord j = Job(7, "req-7");
    j.job.set_state(v1::JOB_STATE_RUNNING);
    j.job.set_attempt(2);
    j.job.add_worker_ids("worker-000001");
    j.job.add_outputs("/tmp/out/adapter.gguf");
    j.job.mutable_progress()->set_step(12);
    j.job.mutable_progress()->set_loss(1.5);
    j.retries_used = 1;
    b.jobs = {j};
    TaskRecord running;
    running.task.set_task_id("job-000007-a2-r0");
    running.task.set_job_id("job-000007");
    running.task.set_attempt(2);
    running.task.set_rank(0);
    running.task.set_world_size(1);
    running.task.set_rendezvous_namespace("job-000007/a2");
    running.worker_id = "worker-000001";
    running.state = TaskState::kRunning;
    TaskRecord failed = running;
    failed.task.set_task_id("job-000007-a1-r0");
    failed.task.set_attempt(1);
    failed.state = TaskState::kFailed;
    failed.error = "boom";
    b.tasks = {running, failed};
    WorkerRecord w;
    w.worker_id = "worker-000001";
    w.name = "host:0";
    w.devices.emplace_back();
    w.devices.back().set_kind("cpu");
    w.devices.back().set_threads(4);
    w.last_heartbeat_ms = 99;
    w.state = WorkerState::kBusy;
    w.task_id = "job-000007-a2-r0";
    b.workers = {w};
    b.events = {StateEvent("job-000007", v1::JOB_STATE_QUEUED)};
    ASSERT_THAT(store->Apply(b), IsOk());
    ASSERT_THAT(store->SetKey("job-000007/a2", "rank0", std::string("\0addr", 5)), IsOk());
  }
  ANVIL_ASSERT_OK_AND_ASSIGN(auto store, Store::Open(path_));
  ANVIL_ASSERT_OK_AND_ASSIGN(auto jobs, store->LoadJobs());
  ASSERT_EQ(jobs.size(), 1u);
  const v1::Job& j = jobs[0].job;
  EXPECT_EQ(jobs[0].number, 7);
  EXPECT_EQ(jobs[0].retries_used, 1);
  EXPECT_EQ(j.job_id(), "job-000007");
  EXPECT_EQ(j.request_id(), "req-7");
  EXPECT_EQ(j.spec().name(), "n7");
  EXPECT_EQ(j.spec().priority(), 3);
  EXPECT_EQ(j.spec().finetune().model(), "/tmp/m.gguf");
  EXPECT_EQ(j.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(j.reason(), "needs 2 workers, 1 idle");
  EXPECT_EQ(j.attempt(), 2);
  ASSERT_EQ(j.worker_ids_size(), 1);
  EXPECT_EQ(j.worker_ids(0), "worker-000001");
  ASSERT_EQ(j.outputs_size(), 1);
  EXPECT_EQ(j.outputs(0), "/tmp/out/adapter.gguf");
  EXPECT_EQ(j.progress().step(), 12);
  EXPECT_EQ(j.progress().loss(), 1.5);
  EXPECT_EQ(j.created_unix_ms(), 1007);
  EXPECT_EQ(j.updated_unix_ms(), 2007);

  ANVIL_ASSERT_OK_AND_ASSIGN(auto tasks, store->LoadActiveTasks());
  ASSERT_EQ(tasks.size(), 1u);  // the failed one of attempt 1 is history
  EXPECT_EQ(tasks[0].task.task_id(), "job-000007-a2-r0");
  EXPECT_EQ(tasks[0].task.rendezvous_namespace(), "job-000007/a2");
  EXPECT_EQ(tasks[0].state, TaskState::kRunning);
  EXPECT_EQ(tasks[0].worker_id, "worker-000001");

  ANVIL_ASSERT_OK_AND_ASSIGN(auto workers, store->LoadWorkers());
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].name, "host:0");
  EXPECT_EQ(workers[0].state, WorkerState::kBusy);
  EXPECT_EQ(workers[0].task_id, "job-000007-a2-r0");
  EXPECT_EQ(workers[0].last_heartbeat_ms, 99);
  ASSERT_EQ(workers[0].devices.size(), 1u);
  EXPECT_EQ(workers[0].devices[0].threads(), 4);

  ANVIL_ASSERT_OK_AND_ASSIGN(auto events, store->ReadEvents("job-000007", 0, 10));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].seq(), 1);
  ANVIL_ASSERT_OK_AND_ASSIGN(auto value, store->GetKey("job-000007/a2", "rank0"));
  ASSERT_TRUE(value.has_value());
  EXPECT_EQ(*value, std::string("\0addr", 5));

  // Dropping the namespace removes its keys.
  Batch drop;
  drop.drop_rendezvous_namespaces = {"job-000007/a2"};
  ASSERT_THAT(store->Apply(drop), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(auto gone, store->GetKey("job-000007/a2", "rank0"));
  EXPECT_FALSE(gone.has_value());
}

TEST_F(StoreTest, OpenFailsForAnUnwritablePath) {
  EXPECT_THAT(Store::Open((dir_ / "missing" / "dir" / "x.db").string()).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition));
}

}  // namespace
}  // namespace anvil::coordinator
