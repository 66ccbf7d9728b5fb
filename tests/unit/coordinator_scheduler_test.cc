// coordinator::Scheduler and PlanPlacement without gRPC: gang scheduling, priority and FIFO,
// wait reasons, elastic sizes, the retry budget, dead workers, cancel and restart. A fake clock
// drives heartbeats; the store is a real SQLite file.
#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/testing/status_matchers.h"

namespace anvil::coordinator {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

v1::JobSpec Spec(int min_workers, int max_workers = 0, int priority = 0,
                 std::optional<int> max_retries = std::nullopt) {
  v1::JobSpec s;
  s.set_min_workers(min_workers);
  s.set_max_workers(max_workers);
  s.set_priority(priority);
  if (max_retries) s.set_max_retries(*max_retries);
  s.mutable_finetune()->set_model("/tmp/m.gguf");
  return s;
}

TEST(PlanPlacementTest, PriorityThenFifoAndStrictOrder) {
  const PlacementPlan plan = PlanPlacement(
      {{"job-000001", 0, 1, 1, 1}, {"job-000002", 5, 2, 2, 2}, {"job-000003", 5, 3, 3, 3}}, 4);
  ASSERT_EQ(plan.starts.size(), 1u);
  EXPECT_EQ(plan.starts[0], std::make_pair(std::string("job-000002"), 2));
  EXPECT_EQ(plan.reasons.at("job-000003"), "needs 3 workers, 2 idle");
  // job 1 fits in the 2 idle workers but waits behind the higher-priority job 3.
  EXPECT_EQ(plan.reasons.at("job-000001"), "waiting behind job-000003 (needs 3 workers, 2 idle)");
}

TEST(PlanPlacementTest, ElasticTakesUpToMax) {
  const PlacementPlan plan = PlanPlacement({{"job-000001", 0, 1, 2, 8}, {"job-000002", 0, 2, 1, 1}}, 5);
  ASSERT_EQ(plan.starts.size(), 1u);
  EXPECT_EQ(plan.starts[0].second, 5);
  EXPECT_EQ(plan.reasons.at("job-000002"), "needs 1 worker, 0 idle");
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("coordinator_scheduler_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    Open();
  }
  void TearDown() override {
    sched_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open(int64_t max_unfinished_jobs = 10000) {
    sched_.reset();
    store_.reset();
    auto store = Store::Open((dir_ / "state.db").string());
    ASSERT_THAT(store, IsOk());
    store_ = std::move(*store);
    SchedulerOptions o;
    o.dead_after_ms = 5000;
    o.max_unfinished_jobs = max_unfinished_jobs;
    o.now_ms = [this] { return now_; };
    o.notify = [this](const std::string& key) { notified_.push_back(key); };
    auto s = Scheduler::Create(store_.get(), o);
    ASSERT_THAT(s, IsOk());
    sched_ = std::move(*s);
  }
  std::string Register(const std::string& name) {
    auto r = sched_->RegisterWorker(name, {});
    EXPECT_THAT(r, IsOk());
    return r.ok() ? r->worker_id() : "";
  }
  v1::Job Submit(const v1::JobSpec& spec, const std::string& request_id = "") {
    auto j = sched_->SubmitJob(request_id, spec);
    EXPECT_THAT(j, IsOk());
    return j.ok() ? *j : v1::Job();
  }
  v1::Job Get(const std::string& id) {
    auto j = sched_->GetJob(id);
    EXPECT_THAT(j, IsOk());
    return j.ok() ? *j : v1::Job();
  }
  v1::Task Take(const std::string& worker) {
    auto t = sched_->TakeTask(worker);
    EXPECT_THAT(t, IsOk());
    EXPECT_TRUE(t.ok() && t->has_value()) << worker << " has no task";
    return t.ok() && t->has_value() ? **t : v1::Task();
  }
  absl::Status Complete(const v1::Task& t, const std::string& worker, bool ok,
                        const std::string& error = "") {
    v1::CompleteTaskRequest r;
    r.set_worker_id(worker);
    r.set_task_id(t.task_id());
    r.set_ok(ok);
    r.set_error(error);
    if (ok && t.rank() == 0) r.add_outputs("/tmp/out/adapter");
    return sched_->CompleteTask(r);
  }
  WorkerState StateOf(const std::string& worker) {
    for (const auto& w : sched_->Workers()) {
      if (w.worker_id == worker) return w.state;
    }
    return WorkerState::kDead;
  }
  std::vector<v1::JobEvent> Events(const std::string& job_id) {
    auto e = store_->ReadEvents(job_id, 0, 1000);
    EXPECT_THAT(e, IsOk());
    return e.ok() ? *e : std::vector<v1::JobEvent>();
  }

  std::filesystem::path dir_;
  int64_t now_ = 1'000'000;
  std::vector<std::string> notified_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Scheduler> sched_;
};

TEST_F(SchedulerTest, GangStartsOnlyWhenAllWorkersAreIdleAndRunsWhenAllPolled) {
  const std::string w1 = Register("h:1"), w2 = Register("h:2");
  const v1::Job job = Submit(Spec(3));
  EXPECT_EQ(job.job_id(), "job-000001");
  EXPECT_EQ(job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.reason(), "needs 3 workers, 2 idle");
  EXPECT_EQ(job.attempt(), 0);

  const std::string w3 = Register("h:3");
  v1::Job scheduled = Get("job-000001");
  EXPECT_EQ(scheduled.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(scheduled.reason(), "");
  EXPECT_EQ(scheduled.attempt(), 1);
  ASSERT_EQ(scheduled.worker_ids_size(), 3);
  EXPECT_NE(std::find(notified_.begin(), notified_.end(), "worker/" + w3), notified_.end());

  const v1::Task t0 = Take(w1);
  EXPECT_EQ(t0.task_id(), "job-000001-a1-r0");
  EXPECT_EQ(t0.rendezvous_namespace(), "job-000001/a1");
  EXPECT_EQ(t0.world_size(), 3);
  EXPECT_EQ(t0.spec().min_workers(), 3);
  Take(w2);
  EXPECT_EQ(Get("job-000001").state(), v1::JOB_STATE_SCHEDULED);
  const v1::Task t2 = Take(w3);
  EXPECT_EQ(t2.rank(), 2);
  EXPECT_EQ(Get("job-000001").state(), v1::JOB_STATE_RUNNING);
  // Polling again hands out the same task (the first response may have been lost).
  EXPECT_EQ(Take(w1).task_id(), "job-000001-a1-r0");

  ASSERT_THAT(Complete(Take(w2), w2, true), IsOk());
  ASSERT_THAT(Complete(t2, w3, true), IsOk());
  EXPECT_EQ(Get("job-000001").state(), v1::JOB_STATE_RUNNING);
  ASSERT_THAT(Complete(t0, w1, true), IsOk());
  const v1::Job done = Get("job-000001");
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(done.outputs_size(), 1);
  EXPECT_EQ(done.outputs(0), "/tmp/out/adapter");
  EXPECT_EQ(StateOf(w1), WorkerState::kIdle);

  // Events: QUEUED, SCHEDULED, RUNNING, SUCCEEDED with seqs 1..4.
  const auto events = Events("job-000001");
  ASSERT_EQ(events.size(), 4u);
  const v1::JobState want[] = {v1::JOB_STATE_QUEUED, v1::JOB_STATE_SCHEDULED,
                               v1::JOB_STATE_RUNNING, v1::JOB_STATE_SUCCEEDED};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(events[i].seq(), i + 1);
    EXPECT_EQ(events[i].state().state(), want[i]);
  }
  EXPECT_EQ(events[1].state().worker_ids_size(), 3);
}

// The queue is bounded: past the limit of unfinished jobs SubmitJob is RESOURCE_EXHAUSTED and
// writes nothing; an idempotent resubmission still answers; a finished job makes room.
TEST_F(SchedulerTest, UnfinishedJobsAreBounded) {
  Open(2);
  const v1::Job a = Submit(Spec(1), "a");
  Submit(Spec(1), "b");
  EXPECT_THAT(sched_->SubmitJob("c", Spec(1)).status(),
              StatusIs(absl::StatusCode::kResourceExhausted));
  auto again = sched_->SubmitJob("a", Spec(1));
  ASSERT_THAT(again, IsOk());
  EXPECT_EQ(again->job_id(), a.job_id());
  ASSERT_THAT(sched_->CancelJob(a.job_id()), IsOk());
  EXPECT_THAT(sched_->SubmitJob("c", Spec(1)), IsOk());
  auto page = sched_->ListJobs({}, 100, "");
  ASSERT_THAT(page, IsOk());
  EXPECT_EQ(page->jobs.size(), 3u);
}

TEST_F(SchedulerTest, HigherPriorityFirstFifoWithinPriority) {
  const v1::Job low = Submit(Spec(1, 1, 0));
  const v1::Job high_a = Submit(Spec(1, 1, 5));
  const v1::Job high_b = Submit(Spec(1, 1, 5));
  EXPECT_EQ(Get(high_a.job_id()).reason(), "needs 1 worker, 0 idle");
  EXPECT_EQ(Get(high_b.job_id()).reason(), "waiting behind job-000002 (needs 1 worker, 0 idle)");
  const std::string w = Register("h:1");
  EXPECT_EQ(Get(high_a.job_id()).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Get(high_b.job_id()).reason(), "needs 1 worker, 0 idle");
  ASSERT_THAT(Complete(Take(w), w, true), IsOk());
  EXPECT_EQ(Get(high_b.job_id()).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Get(low.job_id()).state(), v1::JOB_STATE_QUEUED);
  ASSERT_THAT(Complete(Take(w), w, true), IsOk());
  EXPECT_EQ(Get(low.job_id()).state(), v1::JOB_STATE_SCHEDULED);
}

TEST_F(SchedulerTest, ElasticJobTakesIdleWorkersUpToMax) {
  Register("h:1");
  Register("h:2");
  const v1::Job job = Submit(Spec(1, 4));
  const v1::Job started = Get(job.job_id());
  EXPECT_EQ(started.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(started.worker_ids_size(), 2);
}

TEST_F(SchedulerTest, RetryBudgetThenFailedWithCause) {
  const std::string w = Register("h:1");
  const v1::Job job = Submit(Spec(1, 1, 0, /*max_retries=*/1));
  ASSERT_THAT(Complete(Take(w), w, false, "out of memory"), IsOk());
  // Requeued and, the worker being idle again, started at once as attempt 2.
  v1::Job j = Get(job.job_id());
  EXPECT_EQ(j.state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(j.attempt(), 2);
  const auto events = Events(job.job_id());
  ASSERT_GE(events.size(), 5u);  // queued, scheduled, running, queued (retry), scheduled
  EXPECT_EQ(events[3].state().state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(events[3].state().reason(),
            "attempt 1 failed: rank 0 (worker-000001): out of memory; retrying");

  const v1::Task t2 = Take(w);
  EXPECT_EQ(t2.task_id(), "job-000001-a2-r0");
  EXPECT_EQ(t2.rendezvous_namespace(), "job-000001/a2");
  ASSERT_THAT(Complete(t2, w, false, "out of memory"), IsOk());
  j = Get(job.job_id());
  EXPECT_EQ(j.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(j.reason(), "attempt 2 failed: rank 0 (worker-000001): out of memory");
  EXPECT_EQ(j.attempt(), 2);
  EXPECT_EQ(StateOf(w), WorkerState::kIdle);
  // A repeated completion is accepted and changes nothing.
  EXPECT_THAT(Complete(t2, w, false, "again"), IsOk());
  EXPECT_THAT(Complete(t2, "worker-000999", true), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SchedulerTest, DefaultRetryBudgetIsTwo) {
  const std::string w = Register("h:1");
  const v1::Job job = Submit(Spec(1));
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_THAT(Complete(Take(w), w, false, "boom"), IsOk());
  }
  EXPECT_EQ(Get(job.job_id()).state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Get(job.job_id()).attempt(), 3);
}

TEST_F(SchedulerTest, FailingRankStopsTheOthersWhoseWorkersFreeWhenTheyStop) {
  const std::string w1 = Register("h:1"), w2 = Register("h:2");
  const v1::Job job = Submit(Spec(2, 2, 0, 0));
  const v1::Task t0 = Take(w1), t1 = Take(w2);
  ASSERT_THAT(Complete(t1, w2, false, "nan loss"), IsOk());
  EXPECT_EQ(Get(job.job_id()).state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(Get(job.job_id()).reason(), "attempt 1 failed: rank 1 (worker-000002): nan loss");
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::HeartbeatResponse hb, sched_->Heartbeat(w1, t0.task_id()));
  EXPECT_TRUE(hb.stop_task());
  v1::ReportProgressRequest p;
  p.set_worker_id(w1);
  p.set_task_id(t0.task_id());
  ANVIL_ASSERT_OK_AND_ASSIGN(bool stop, sched_->ReportProgress(p));
  EXPECT_TRUE(stop);
  EXPECT_EQ(StateOf(w1), WorkerState::kBusy);
  EXPECT_EQ(StateOf(w2), WorkerState::kIdle);
  ASSERT_THAT(Complete(t0, w1, false, "stopped"), IsOk());
  EXPECT_EQ(StateOf(w1), WorkerState::kIdle);
  EXPECT_EQ(sched_->Task(t0.task_id())->state, TaskState::kStopped);
}

TEST_F(SchedulerTest, SilentWorkerIsDeclaredDeadAndTheAttemptRetried) {
  const std::string w1 = Register("h:1"), w2 = Register("h:2");
  const v1::Job job = Submit(Spec(1));
  const v1::Task t = Take(w1);
  now_ += 3000;
  ASSERT_TRUE(sched_->Heartbeat(w2, "").ok());
  now_ += 3000;  // w1 silent for 6 s, w2 for 3 s
  ASSERT_THAT(sched_->CheckWorkers(), IsOk());
  EXPECT_EQ(StateOf(w1), WorkerState::kDead);
  EXPECT_EQ(StateOf(w2), WorkerState::kBusy);  // attempt 2 runs there
  const v1::Job j = Get(job.job_id());
  EXPECT_EQ(j.attempt(), 2);
  EXPECT_EQ(j.worker_ids(0), w2);
  const auto events = Events(job.job_id());
  EXPECT_THAT(events[3].state().reason(),
              HasSubstr("attempt 1 failed: rank 0 (worker-000001, h:1): no heartbeat for 6000 ms"));
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::HeartbeatResponse hb, sched_->Heartbeat(w1, t.task_id()));
  EXPECT_TRUE(hb.reregister());
  EXPECT_THAT(sched_->TakeTask(w1).status(), StatusIs(absl::StatusCode::kNotFound));
  // Registering again under the same name brings it back, idle, with the same id.
  EXPECT_EQ(Register("h:1"), w1);
  EXPECT_EQ(StateOf(w1), WorkerState::kIdle);
}

TEST_F(SchedulerTest, CancelQueuedAndRunning) {
  const v1::Job queued = Submit(Spec(2));
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job c, sched_->CancelJob(queued.job_id()));
  EXPECT_EQ(c.state(), v1::JOB_STATE_CANCELLED);

  const std::string w = Register("h:1");
  const v1::Job running = Submit(Spec(1));
  const v1::Task t = Take(w);
  ANVIL_ASSERT_OK_AND_ASSIGN(c, sched_->CancelJob(running.job_id()));
  EXPECT_EQ(c.state(), v1::JOB_STATE_CANCELLED);
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::HeartbeatResponse hb, sched_->Heartbeat(w, t.task_id()));
  EXPECT_TRUE(hb.stop_task());
  EXPECT_EQ(StateOf(w), WorkerState::kBusy);
  // The worker stopped and reports idle: it is free.
  ANVIL_ASSERT_OK_AND_ASSIGN(hb, sched_->Heartbeat(w, ""));
  EXPECT_FALSE(hb.stop_task());
  EXPECT_EQ(StateOf(w), WorkerState::kIdle);
  // Cancelling a final job returns it unchanged; unknown ids are NOT_FOUND.
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job again, sched_->CancelJob(running.job_id()));
  EXPECT_EQ(again.updated_unix_ms(), c.updated_unix_ms());
  EXPECT_THAT(sched_->CancelJob("job-999999").status(), StatusIs(absl::StatusCode::kNotFound));
}

TEST_F(SchedulerTest, IdempotentSubmitAndPaging) {
  const v1::Job a = Submit(Spec(1), "req-1");
  const v1::Job again = Submit(Spec(4), "req-1");
  EXPECT_EQ(again.job_id(), a.job_id());
  EXPECT_EQ(again.spec().min_workers(), 1);
  for (int i = 0; i < 4; ++i) Submit(Spec(1));
  ANVIL_ASSERT_OK_AND_ASSIGN(JobPage p1, sched_->ListJobs({}, 2, ""));
  ASSERT_EQ(p1.jobs.size(), 2u);
  EXPECT_EQ(p1.jobs[0].job_id(), "job-000005");
  EXPECT_EQ(p1.jobs[1].job_id(), "job-000004");
  ANVIL_ASSERT_OK_AND_ASSIGN(JobPage p2, sched_->ListJobs({}, 2, p1.next_page_token));
  ANVIL_ASSERT_OK_AND_ASSIGN(JobPage p3, sched_->ListJobs({}, 2, p2.next_page_token));
  ASSERT_EQ(p3.jobs.size(), 1u);
  EXPECT_EQ(p3.jobs[0].job_id(), "job-000001");
  EXPECT_EQ(p3.next_page_token, "");
  EXPECT_THAT(sched_->ListJobs({}, 2, "garbage").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_TRUE(sched_->CancelJob("job-000003").ok());
  ANVIL_ASSERT_OK_AND_ASSIGN(JobPage cancelled,
                             sched_->ListJobs({v1::JOB_STATE_CANCELLED}, 0, ""));
  ASSERT_EQ(cancelled.jobs.size(), 1u);
  EXPECT_EQ(cancelled.jobs[0].job_id(), "job-000003");
}

TEST_F(SchedulerTest, RestartKeepsJobsAndGivesBusyWorkersAGracePeriod) {
  const std::string w = Register("h:1");
  const v1::Job running = Submit(Spec(1));
  const v1::Task t = Take(w);
  const v1::Job queued = Submit(Spec(1), "req-q");
  now_ += 60'000;  // the coordinator was down for a minute
  Open();
  EXPECT_EQ(Get(running.job_id()).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(Get(queued.job_id()).state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Submit(Spec(1), "req-q").job_id(), queued.job_id());
  ASSERT_THAT(sched_->CheckWorkers(), IsOk());
  EXPECT_EQ(StateOf(w), WorkerState::kBusy);  // within the grace period
  now_ += 4000;
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::HeartbeatResponse hb, sched_->Heartbeat(w, t.task_id()));
  EXPECT_FALSE(hb.stop_task());
  EXPECT_FALSE(hb.reregister());
  ASSERT_THAT(Complete(t, w, true), IsOk());
  EXPECT_EQ(Get(running.job_id()).state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(Get(queued.job_id()).state(), v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Submit(Spec(1)).job_id(), "job-000003");
  // Seqs continue without gaps across the restart.
  const auto events = Events(running.job_id());
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i].seq(), static_cast<int64_t>(i + 1));
}

TEST_F(SchedulerTest, RestartInTheMiddleOfAGangCountsRanksThatAlreadySucceeded) {
  const std::string w1 = Register("h:1"), w2 = Register("h:2");
  const v1::Job job = Submit(Spec(2));
  const v1::Task t0 = Take(w1), t1 = Take(w2);
  ASSERT_THAT(Complete(t1, w2, true), IsOk());
  Open();
  EXPECT_EQ(Get(job.job_id()).state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(StateOf(w2), WorkerState::kIdle);
  ASSERT_THAT(Complete(t0, w1, true), IsOk());
  EXPECT_EQ(Get(job.job_id()).state(), v1::JOB_STATE_SUCCEEDED);
}

}  // namespace
}  // namespace anvil::coordinator
