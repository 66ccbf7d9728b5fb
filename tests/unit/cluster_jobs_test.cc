// Job control on a real cluster (processes on loopback): a crashing task fails its job after
// exactly its retry budget with the cause; cancel stops a running job within seconds and frees
// its workers; a gang job waits with its reason; the anvil CLI submits, watches and lists; and a
// client generated from proto/ by Python's grpcio-tools submits and watches a job.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster_jobs.h"
#include "tests/testing/status_matchers.h"

namespace anvil::testing {
namespace {

using ::testing::HasSubstr;

int CountAttemptsStarted(const std::vector<v1::JobEvent>& events) {
  int n = 0;
  for (const auto& ev : events) n += ev.has_state() && ev.state().state() == v1::JOB_STATE_SCHEDULED;
  return n;
}

TEST(ClusterJobs, CrashingTaskFailsAfterExactlyItsRetryBudget) {
  const std::string dir = MakeClusterWorkDir("crash");
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w, c.StartWorker("w0"));
  // The data file does not exist: every attempt fails when the worker loads it.
  v1::JobSpec spec = FinetuneJob(dir, LoraRecipe("out", 5, 5), 1);
  spec.mutable_finetune()->mutable_data()->set_train(dir + "/missing.jsonl");
  spec.set_max_retries(2);
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job job, Submit(c, spec));
  const auto events = FollowJob(c, job.job_id(), 120);
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job done, GetJob(c, job.job_id()));
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(done.attempt(), 3);  // the first attempt and its 2 retries
  EXPECT_EQ(CountAttemptsStarted(events), 3);
  EXPECT_THAT(done.reason(), HasSubstr("missing.jsonl"));
}

TEST(ClusterJobs, CancelStopsARunningJobWithinSecondsAndFreesItsWorkers) {
  const std::string dir = MakeClusterWorkDir("cancel");
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w1, c.StartWorker("w1"));
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job job,
                             Submit(c, FinetuneJob(dir, LoraRecipe("out", 100000, 1000), 2)));
  std::chrono::steady_clock::time_point cancelled_at;
  const auto events = FollowJob(c, job.job_id(), 120, [&](const v1::JobEvent& ev) {
    if (ev.has_progress() && ev.progress().step() == 3) {
      grpc::ClientContext ctx;
      c.Prepare(&ctx);
      v1::CancelJobRequest req;
      req.set_job_id(job.job_id());
      v1::Job j;
      ASSERT_TRUE(c.Jobs()->CancelJob(&ctx, req, &j).ok());
      cancelled_at = std::chrono::steady_clock::now();
    }
  });
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job done, GetJob(c, job.job_id()));
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED);
  // Freed: a 2-worker job submitted now runs to the end.
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job next, Submit(c, FinetuneJob(dir, LoraRecipe("next", 3, 3), 2)));
  const auto next_events = FollowJob(c, next.job_id(), 120);
  const auto freed_after = std::chrono::steady_clock::now() - cancelled_at;
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job next_done, GetJob(c, next.job_id()));
  EXPECT_EQ(next_done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_LT(freed_after, std::chrono::seconds(30));
}

TEST(ClusterJobs, GangJobWaitsWithItsReason) {
  const std::string dir = MakeClusterWorkDir("gang");
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w1, c.StartWorker("w1"));
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job job, Submit(c, FinetuneJob(dir, LoraRecipe("out", 3, 3), 3)));
  // The reason is set when the scheduler looks at the job: poll briefly.
  std::string reason;
  for (int i = 0; i < 50 && reason.empty(); ++i) {
    ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job j, GetJob(c, job.job_id()));
    EXPECT_EQ(j.state(), v1::JOB_STATE_QUEUED);
    reason = j.reason();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(reason, "needs 3 workers, 2 idle");
  // A third worker lets it run.
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w2, c.StartWorker("w2"));
  FollowJob(c, job.job_id(), 120);
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job done, GetJob(c, job.job_id()));
  EXPECT_EQ(done.state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done.worker_ids_size(), 3);
}

TEST(ClusterCli, SubmitWatchAndList) {
  const std::string dir = MakeClusterWorkDir("cli");
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  std::ofstream(dir + "/r.yaml") << LoraRecipe("out", 4, 2);
  const std::string anvil = absl::StrCat(BuildPath("cli/anvil"), " ");
  const std::string conn = absl::StrCat(" --coordinator ", c.address, " --token-file ", c.token_file);
  int code = -1;
  std::string out = RunShell(anvil + "submit " + dir + "/r.yaml --watch --name cli-job" + conn, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("SUCCEEDED"));
  EXPECT_THAT(out, HasSubstr("step 4/4"));
  out = RunShell(anvil + "jobs" + conn, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("cli-job"));
  EXPECT_THAT(out, HasSubstr("SUCCEEDED"));
  // Without the token: refused, exit 1, the code named.
  out = RunShell(anvil + "jobs --coordinator " + c.address + " --token-file /dev/null", &code);
  EXPECT_NE(code, 0) << out;
  std::ofstream(dir + "/wrong") << "0000\n";
  out = RunShell(anvil + "jobs --coordinator " + c.address + " --token-file " + dir + "/wrong", &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("UNAUTHENTICATED"));
  // A bad recipe is refused before anything is sent, naming the file, line and field.
  std::ofstream(dir + "/bad.yaml") << LoraRecipe("out", 4, 2) << "lora: {rank: -3}\n";
  out = RunShell(anvil + "submit " + dir + "/bad.yaml" + conn, &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("lora"));
}

TEST(ClusterPythonClient, GeneratedClientSubmitsAndWatchesAJob) {
  const std::string python = std::string(ANVIL_SOURCE_DIR) + "/build/grpc-venv/bin/python";
  if (!std::filesystem::exists(python)) {
    GTEST_SKIP() << python << " missing: scripts/test.sh creates it (anvil_ensure_grpc_venv)";
  }
  const std::string dir = MakeClusterWorkDir("python");
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  v1::JobSpec spec = FinetuneJob(dir, LoraRecipe("out", 3, 3), 1);
  std::ofstream(dir + "/spec.json") << rpc::FinetuneSpecToJson(spec.finetune());
  int code = -1;
  const std::string out =
      RunShell(absl::StrCat(python, " ", ANVIL_SOURCE_DIR, "/tests/python/cluster_client.py --proto-dir ",
                       ANVIL_SOURCE_DIR, "/proto --address ", c.address, " --token-file ",
                       c.token_file, " --spec-json ", dir, "/spec.json"),
          &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("no token: UNAUTHENTICATED"));
  EXPECT_THAT(out, HasSubstr("final JOB_STATE_SUCCEEDED steps=3"));
}

}  // namespace
}  // namespace anvil::testing
