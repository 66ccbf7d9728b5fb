// The coordinator's gRPC services over loopback, in-process: authentication on every method,
// validation, idempotency, watching, a simulated worker (a gRPC client in the test) through
// success, death, failure and cancel, the rendezvous store, message size limits, shutdown.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "anvil/v1/jobs.grpc.pb.h"
#include "anvil/v1/rendezvous.grpc.pb.h"
#include "anvil/v1/workers.grpc.pb.h"
#include "coordinator/server.h"
#include "rpc/auth.h"
#include "tests/testing/status_matchers.h"

namespace anvil::coordinator {
namespace {

using ::testing::HasSubstr;
constexpr char kToken[] = "test-token-0123456789";

v1::JobSpec ValidSpec(int max_retries = 2) {
  v1::JobSpec s;
  s.set_name("t");
  s.set_max_retries(max_retries);
  v1::FinetuneSpec* f = s.mutable_finetune();
  f->set_model("/tmp/m.gguf");
  f->set_method("lora");
  f->mutable_data()->set_train("/tmp/t.jsonl");
  f->mutable_output()->set_dir("/tmp/out");
  return s;
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("coordinator_service_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    CoordinatorOptions o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_ / "state.db").string();
    o.token = kToken;
    o.heartbeat_interval_ms = 50;
    o.dead_after_ms = 500;
    auto server = CoordinatorServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    auto channel = grpc::CreateCustomChannel(server_->address(),
                                             grpc::InsecureChannelCredentials(), args);
    jobs_ = v1::Jobs::NewStub(channel);
    workers_ = v1::Workers::NewStub(channel);
    rdv_ = v1::Rendezvous::NewStub(channel);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = kToken,
                                                  int deadline_ms = 10000) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    rpc::PrepareContext(ctx.get(), token, std::chrono::milliseconds(deadline_ms));
    return ctx;
  }
  v1::Job Submit(const v1::JobSpec& spec, const std::string& request_id = "") {
    v1::SubmitJobRequest req;
    req.set_request_id(request_id);
    *req.mutable_spec() = spec;
    v1::Job job;
    const grpc::Status s = jobs_->SubmitJob(Ctx().get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }
  v1::Job Get(const std::string& id) {
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(jobs_->GetJob(Ctx().get(), req, &job).ok());
    return job;
  }
  std::string Register(const std::string& name) {
    v1::RegisterRequest req;
    req.set_name(name);
    req.add_devices()->set_kind("cpu");
    v1::RegisterResponse resp;
    EXPECT_TRUE(workers_->Register(Ctx().get(), req, &resp).ok());
    EXPECT_EQ(resp.dead_after_ms(), 500);
    return resp.worker_id();
  }
  v1::PollTaskResponse Poll(const std::string& worker, int wait_ms) {
    v1::PollTaskRequest req;
    req.set_worker_id(worker);
    req.set_wait_ms(wait_ms);
    v1::PollTaskResponse resp;
    const grpc::Status s = workers_->PollTask(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  v1::HeartbeatResponse Heartbeat(const std::string& worker, const std::string& task) {
    v1::HeartbeatRequest req;
    req.set_worker_id(worker);
    req.set_task_id(task);
    v1::HeartbeatResponse resp;
    EXPECT_TRUE(workers_->Heartbeat(Ctx().get(), req, &resp).ok());
    return resp;
  }
  grpc::Status Complete(const std::string& worker, const std::string& task, bool ok,
                        const std::string& error = "") {
    v1::CompleteTaskRequest req;
    req.set_worker_id(worker);
    req.set_task_id(task);
    req.set_ok(ok);
    req.set_error(error);
    if (ok) req.add_outputs("/tmp/out/adapter.gguf");
    v1::CompleteTaskResponse resp;
    return workers_->CompleteTask(Ctx().get(), req, &resp);
  }
  // Reads the whole stream; `status` gets how it ended.
  std::vector<v1::JobEvent> Watch(const std::string& id, int64_t after_seq, grpc::Status* status,
                                  int deadline_ms = 10000) {
    v1::WatchJobRequest req;
    req.set_job_id(id);
    req.set_after_seq(after_seq);
    auto ctx = Ctx(kToken, deadline_ms);
    auto reader = jobs_->WatchJob(ctx.get(), req);
    std::vector<v1::JobEvent> events;
    v1::JobEvent e;
    while (reader->Read(&e)) events.push_back(e);
    *status = reader->Finish();
    return events;
  }

  std::filesystem::path dir_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Jobs::Stub> jobs_;
  std::unique_ptr<v1::Workers::Stub> workers_;
  std::unique_ptr<v1::Rendezvous::Stub> rdv_;
};

TEST_F(ServiceTest, EveryMethodNeedsTheToken) {
  using Call = std::function<grpc::Status(grpc::ClientContext*)>;
  const std::vector<std::pair<std::string, Call>> calls = {
      {"SubmitJob", [&](grpc::ClientContext* c) { v1::Job r; v1::SubmitJobRequest q;
         *q.mutable_spec() = ValidSpec(); return jobs_->SubmitJob(c, q, &r); }},
      {"GetJob", [&](grpc::ClientContext* c) { v1::Job r; return jobs_->GetJob(c, {}, &r); }},
      {"ListJobs", [&](grpc::ClientContext* c) { v1::ListJobsResponse r;
         return jobs_->ListJobs(c, {}, &r); }},
      {"CancelJob", [&](grpc::ClientContext* c) { v1::Job r; return jobs_->CancelJob(c, {}, &r); }},
      {"WatchJob", [&](grpc::ClientContext* c) { auto rd = jobs_->WatchJob(c, {});
         v1::JobEvent e; while (rd->Read(&e)) {} return rd->Finish(); }},
      {"Register", [&](grpc::ClientContext* c) { v1::RegisterResponse r; v1::RegisterRequest q;
         q.set_name("w"); return workers_->Register(c, q, &r); }},
      {"Heartbeat", [&](grpc::ClientContext* c) { v1::HeartbeatResponse r;
         return workers_->Heartbeat(c, {}, &r); }},
      {"PollTask", [&](grpc::ClientContext* c) { v1::PollTaskResponse r;
         return workers_->PollTask(c, {}, &r); }},
      {"ReportProgress", [&](grpc::ClientContext* c) { v1::ReportProgressResponse r;
         return workers_->ReportProgress(c, {}, &r); }},
      {"CompleteTask", [&](grpc::ClientContext* c) { v1::CompleteTaskResponse r;
         return workers_->CompleteTask(c, {}, &r); }},
      {"Set", [&](grpc::ClientContext* c) { v1::SetResponse r; return rdv_->Set(c, {}, &r); }},
      {"Get", [&](grpc::ClientContext* c) { v1::GetResponse r; return rdv_->Get(c, {}, &r); }},
      {"Wait", [&](grpc::ClientContext* c) { v1::WaitResponse r; return rdv_->Wait(c, {}, &r); }},
  };
  ASSERT_EQ(calls.size(), 13u);
  for (const auto& [name, call] : calls) {
    for (const auto& [token, message] : {std::pair<std::string, std::string>{"", "missing bearer token"},
                                         {"wrong-token", "invalid bearer token"}}) {
      const grpc::Status s = call(Ctx(token).get());
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name << " token=" << token;
      EXPECT_EQ(s.error_message(), message) << name;
    }
  }
  // Nothing got through: no job, no worker.
  EXPECT_TRUE(server_->scheduler()->Workers().empty());
  v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.jobs_size(), 0);
}

TEST_F(ServiceTest, SubmitValidatesAndIsIdempotent) {
  v1::SubmitJobRequest req;
  *req.mutable_spec() = ValidSpec();
  req.mutable_spec()->mutable_finetune()->mutable_lora()->set_rank(-1);
  v1::Job job;
  grpc::Status s = jobs_->SubmitJob(Ctx().get(), req, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("spec.finetune.lora.rank"));
  *req.mutable_spec() = ValidSpec();
  req.set_request_id(std::string(129, 'x'));
  s = jobs_->SubmitJob(Ctx().get(), req, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("request_id"));

  const v1::Job first = Submit(ValidSpec(), std::string(128, 'r'));
  EXPECT_EQ(first.job_id(), "job-000001");
  EXPECT_EQ(first.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(first.reason(), "needs 1 worker, 0 idle");
  EXPECT_EQ(Submit(ValidSpec(), std::string(128, 'r')).job_id(), "job-000001");
  EXPECT_EQ(Submit(ValidSpec()).job_id(), "job-000002");

  v1::GetJobRequest get;
  get.set_job_id("job-424242");
  EXPECT_EQ(jobs_->GetJob(Ctx().get(), get, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::CancelJobRequest cancel;
  cancel.set_job_id("job-424242");
  EXPECT_EQ(jobs_->CancelJob(Ctx().get(), cancel, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::Status ws;
  EXPECT_TRUE(Watch("job-424242", 0, &ws).empty());
  EXPECT_EQ(ws.error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ListJobsRequest list;
  list.set_page_token("not-a-token");
  v1::ListJobsResponse resp;
  EXPECT_EQ(jobs_->ListJobs(Ctx().get(), list, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  list.set_page_token("");
  list.set_page_size(1);
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), list, &resp).ok());
  ASSERT_EQ(resp.jobs_size(), 1);
  EXPECT_EQ(resp.jobs(0).job_id(), "job-000002");
  EXPECT_FALSE(resp.next_page_token().empty());
}

TEST_F(ServiceTest, OversizedMessageIsRefused) {
  v1::SubmitJobRequest req;
  *req.mutable_spec() = ValidSpec();
  req.mutable_spec()->set_name(std::string(17 << 20, 'n'));
  v1::Job job;
  EXPECT_EQ(jobs_->SubmitJob(Ctx().get(), req, &job).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(ServiceTest, WorkerRunsAJobToSuccessAndWatchResumes) {
  const std::string w = Register("host:0");
  // The long poll is waiting when the job arrives, and returns at once with the task.
  auto poll = std::async(std::launch::async, [&] { return Poll(w, 20000); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // let the poll start waiting
  const auto t0 = std::chrono::steady_clock::now();
  const v1::Job job = Submit(ValidSpec());
  const v1::PollTaskResponse got = poll.get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  ASSERT_TRUE(got.has_task());
  EXPECT_EQ(got.task().task_id(), "job-000001-a1-r0");
  EXPECT_EQ(got.task().spec().finetune().method(), "lora");
  EXPECT_EQ(Get(job.job_id()).state(), v1::JOB_STATE_RUNNING);

  v1::ReportProgressRequest p;
  p.set_worker_id(w);
  p.set_task_id(got.task().task_id());
  p.mutable_progress()->set_step(5);
  p.mutable_progress()->set_loss(2.25);
  p.add_log_lines("step 5 loss 2.25");
  v1::ReportProgressResponse pr;
  ASSERT_TRUE(workers_->ReportProgress(Ctx().get(), p, &pr).ok());
  EXPECT_FALSE(pr.stop_task());
  EXPECT_EQ(Get(job.job_id()).progress().step(), 5);
  EXPECT_FALSE(Heartbeat(w, got.task().task_id()).stop_task());

  // A watch started now follows live: it ends after SUCCEEDED.
  grpc::Status ws;
  auto live = std::async(std::launch::async, [&] { return Watch(job.job_id(), 3, &ws); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(Complete(w, got.task().task_id(), true).ok());
  const std::vector<v1::JobEvent> tail = live.get();
  EXPECT_TRUE(ws.ok()) << ws.error_message();
  ASSERT_EQ(tail.size(), 3u);
  EXPECT_EQ(tail[0].seq(), 4);
  EXPECT_EQ(tail[0].progress().step(), 5);
  EXPECT_EQ(tail[1].log().text(), "step 5 loss 2.25");
  EXPECT_EQ(tail[1].log().worker_id(), w);
  EXPECT_EQ(tail[2].state().state(), v1::JOB_STATE_SUCCEEDED);

  const v1::Job done = Get(job.job_id());
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  ASSERT_EQ(done.outputs_size(), 1);
  EXPECT_EQ(done.outputs(0), "/tmp/out/adapter.gguf");
  // Replay of a finished job: every event, seqs 1..6, then the end.
  const std::vector<v1::JobEvent> all = Watch(job.job_id(), 0, &ws);
  EXPECT_TRUE(ws.ok());
  ASSERT_EQ(all.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(all[i].seq(), i + 1);
  EXPECT_EQ(all[0].state().state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(all[2].state().state(), v1::JOB_STATE_RUNNING);
  EXPECT_TRUE(Watch(job.job_id(), 6, &ws).empty());
  EXPECT_TRUE(ws.ok());
  // An empty poll returns after its wait.
  EXPECT_FALSE(Poll(w, 50).has_task());
}

TEST_F(ServiceTest, SilentWorkerFailsTheAttemptAndTheJobIsRequeued) {
  const std::string w = Register("host:0");
  const v1::Job job = Submit(ValidSpec());
  const v1::PollTaskResponse got = Poll(w, 0);
  ASSERT_TRUE(got.has_task());
  // No more heartbeats: within dead_after_ms (500) plus a check interval the attempt fails.
  grpc::Status ws;
  v1::WatchJobRequest req;
  req.set_job_id(job.job_id());
  req.set_after_seq(3);
  auto ctx = Ctx(kToken, 5000);
  auto reader = jobs_->WatchJob(ctx.get(), req);
  v1::JobEvent e;
  ASSERT_TRUE(reader->Read(&e));
  EXPECT_EQ(e.state().state(), v1::JOB_STATE_QUEUED);
  EXPECT_THAT(e.state().reason(),
              HasSubstr("attempt 1 failed: rank 0 (worker-000001, host:0): no heartbeat for"));
  EXPECT_THAT(e.state().reason(), HasSubstr("; retrying"));
  ctx->TryCancel();
  reader->Finish();
  const v1::Job j = Get(job.job_id());
  EXPECT_EQ(j.state(), v1::JOB_STATE_QUEUED);
  EXPECT_THAT(j.reason(), HasSubstr("; retrying; needs 1 worker, 0 idle"));
  EXPECT_TRUE(Heartbeat(w, got.task().task_id()).reregister());
  // Back under the same name, the worker takes attempt 2.
  EXPECT_EQ(Register("host:0"), w);
  EXPECT_EQ(Poll(w, 0).task().task_id(), "job-000001-a2-r0");
}

TEST_F(ServiceTest, FailureBeyondTheBudgetFailsTheJobWithTheCause) {
  const std::string w = Register("host:0");
  const v1::Job job = Submit(ValidSpec(/*max_retries=*/1));
  ASSERT_TRUE(Complete(w, Poll(w, 0).task().task_id(), false, "disk full").ok());
  ASSERT_TRUE(Complete(w, Poll(w, 0).task().task_id(), false, "disk full").ok());
  const v1::Job j = Get(job.job_id());
  EXPECT_EQ(j.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(j.reason(), "attempt 2 failed: rank 0 (worker-000001): disk full");
  EXPECT_EQ(Complete(w, "job-000001-a9-r0", true).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, CancellingARunningJobStopsTheWorker) {
  const std::string w = Register("host:0");
  const v1::Job job = Submit(ValidSpec());
  const std::string task = Poll(w, 0).task().task_id();
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.job_id());
  v1::Job c;
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &c).ok());
  EXPECT_EQ(c.state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(Heartbeat(w, task).stop_task());
  v1::ReportProgressRequest p;
  p.set_worker_id(w);
  p.set_task_id(task);
  v1::ReportProgressResponse pr;
  ASSERT_TRUE(workers_->ReportProgress(Ctx().get(), p, &pr).ok());
  EXPECT_TRUE(pr.stop_task());
  ASSERT_TRUE(Complete(w, task, false, "stopped").ok());
  // Freed: the next job goes to it.
  Submit(ValidSpec());
  EXPECT_EQ(Poll(w, 0).task().task_id(), "job-000002-a1-r0");
}

TEST_F(ServiceTest, RendezvousSetGetWait) {
  v1::SetRequest set;
  set.set_namespace_("job-000001/a1");
  set.set_key("rank0");
  set.set_value(std::string("\x00\x01", 2));
  v1::SetResponse sr;
  // A Get waiting for the key returns when it is set.
  auto waiting = std::async(std::launch::async, [&] {
    v1::GetRequest get;
    get.set_namespace_("job-000001/a1");
    get.set_key("rank0");
    get.set_timeout_ms(20000);
    v1::GetResponse resp;
    const grpc::Status s = rdv_->Get(Ctx().get(), get, &resp);
    return std::make_pair(s.error_code(), resp.value());
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(rdv_->Set(Ctx().get(), set, &sr).ok());
  const auto [code, value] = waiting.get();
  EXPECT_EQ(code, grpc::StatusCode::OK);
  EXPECT_EQ(value, std::string("\x00\x01", 2));

  v1::WaitRequest wait;
  wait.set_namespace_("job-000001/a1");
  wait.add_keys("rank0");
  wait.add_keys("rank1");
  wait.set_timeout_ms(100);
  v1::WaitResponse wr;
  EXPECT_EQ(rdv_->Wait(Ctx().get(), wait, &wr).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  set.set_key("rank1");
  ASSERT_TRUE(rdv_->Set(Ctx().get(), set, &sr).ok());
  EXPECT_TRUE(rdv_->Wait(Ctx().get(), wait, &wr).ok());

  v1::GetRequest get;
  get.set_namespace_("other");
  get.set_key("rank0");
  get.set_timeout_ms(50);
  v1::GetResponse gr;
  EXPECT_EQ(rdv_->Get(Ctx().get(), get, &gr).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  get.set_namespace_("");
  EXPECT_EQ(rdv_->Get(Ctx().get(), get, &gr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  set.set_value(std::string((1 << 20) + 1, 'v'));
  EXPECT_EQ(rdv_->Set(Ctx().get(), set, &sr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  set.set_value("v");
  set.set_key("");
  EXPECT_EQ(rdv_->Set(Ctx().get(), set, &sr).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServiceTest, ShutdownEndsWatchesAndPolls) {
  const std::string w = Register("host:0");
  Submit([] { auto s = ValidSpec(); s.set_min_workers(2); return s; }());
  grpc::Status ws;
  auto watch = std::async(std::launch::async, [&] { return Watch("job-000001", 0, &ws, 20000); });
  auto poll = std::async(std::launch::async, [&] {
    v1::PollTaskRequest req;
    req.set_worker_id(w);
    req.set_wait_ms(20000);
    v1::PollTaskResponse resp;
    return workers_->PollTask(Ctx().get(), req, &resp).error_code();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t0 = std::chrono::steady_clock::now();
  server_->Shutdown();
  EXPECT_EQ(watch.get().size(), 1u);  // the QUEUED event
  EXPECT_NE(ws.error_code(), grpc::StatusCode::OK);
  EXPECT_NE(poll.get(), grpc::StatusCode::OK);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

}  // namespace
}  // namespace anvil::coordinator
