// Eval jobs on a real local cluster (anvil-coordinator + 2 anvil-workers + the anvil CLI, all
// processes on loopback) with the real SmolLM2 Q4_1 model: the 2-worker job's result file equals
// `anvil eval --out`'s byte for byte (a log-likelihood task and a generation task), the result is
// registered as an "eval" artifact whose parent is the model, and bad specs are refused with the
// field named. Skipped without the model file (scripts/test.sh fetches it).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "anvil/v1/artifacts.grpc.pb.h"
#include "tests/testing/cluster_harness.h"
#include "tests/testing/cluster_jobs.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::testing {
namespace {

using ::testing::HasSubstr;

std::string ReadAll(const std::string& path) {
  if (!std::filesystem::exists(path)) return "";
  return ReadFileOrDie(path);
}

TEST(ClusterEval, TwoWorkerJobGivesTheLocalResultFileAndRegistersItWithTheModel) {
  const std::string model = Q41ModelPath();
  if (!std::filesystem::exists(model)) GTEST_SKIP() << model << " missing (scripts/fetch-model.sh)";
  const std::string dir = MakeClusterWorkDir("eval", 1);
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w1, c.StartWorker("w1"));
  const std::string anvil = BuildPath("cli/anvil") + " ";
  const std::string conn = absl::StrCat(" --coordinator ", c.address, " --token-file ", c.token_file);
  // The shipped task files with their data made by the shipped scripts (data/ is not in git),
  // laid out as in the source tree so the tasks' relative data paths resolve.
  const std::string src = ANVIL_SOURCE_DIR;
  std::filesystem::create_directories(dir + "/tasks");
  for (const char* t : {"arith-mc.yaml", "ner.yaml"}) {
    std::filesystem::copy_file(src + "/tasks/" + t, dir + "/tasks/" + t);
  }
  int made = -1;
  const std::string data_out = RunShell(
      absl::StrCat("python3 ", src, "/scripts/data/make_ner.py --out ", dir, "/data/ner --seed 42",
                   " && python3 ", src, "/scripts/data/make_mc.py --out ", dir, "/data/mc"),
      &made);
  ASSERT_EQ(made, 0) << data_out;

  struct Case {
    std::string task;
    int limit;
    std::string metric;
  } cases[] = {{"arith-mc", 9, "\"acc\""}, {"ner", 3, "\"exact_match_json\""}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.task);
    // Normalized, as `anvil eval-job` sends it, since the result file records the task's path.
    const std::string task =
        std::filesystem::path(absl::StrCat(dir, "/tasks/", k.task, ".yaml")).lexically_normal();
    const std::string local = dir + "/local-" + k.task + ".json";
    const std::string remote = dir + "/cluster-" + k.task + ".json";
    const std::string args = absl::StrCat(model, " ", task, " --limit ", k.limit, " --threads 1");
    int code = -1;
    std::string out = RunShell(anvil + "eval " + args + " --out " + local, &code);
    ASSERT_EQ(code, 0) << out;
    out = RunShell(anvil + "eval-job " + args + " --out " + remote + " --workers 2 --watch" + conn,
                   &code);
    ASSERT_EQ(code, 0) << out;
    EXPECT_THAT(out, HasSubstr("SUCCEEDED"));
    EXPECT_THAT(out, HasSubstr("result: " +
                               std::filesystem::path(remote).lexically_normal().string()));
    const std::string want = ReadAll(local);
    EXPECT_THAT(want, HasSubstr(k.metric));
    EXPECT_THAT(want, HasSubstr(absl::StrCat("\"examples\": ", k.limit)));
    EXPECT_EQ(ReadAll(remote), want);
  }

  // Both results are "eval" artifacts whose parent is the model, carrying the headline numbers.
  auto stub = v1::Artifacts::NewStub(grpc::CreateChannel(c.address,
                                                         grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  c.Prepare(&ctx);
  v1::ListArtifactsRequest req;
  req.set_kind("eval");
  v1::ListArtifactsResponse evals;
  ASSERT_TRUE(stub->ListArtifacts(&ctx, req, &evals).ok());
  ASSERT_EQ(evals.artifacts_size(), 2);
  for (const v1::Artifact& a : evals.artifacts()) {
    ASSERT_EQ(a.info().parent_ids_size(), 1);
    ASSERT_EQ(a.lineage_size(), 1);
    EXPECT_EQ(a.lineage(0).kind(), "model");
    EXPECT_EQ(a.lineage(0).name(), std::filesystem::path(model).filename().string());
    EXPECT_TRUE(a.info().metadata().contains("task"));
  }
  // Newest first: ner, then arith-mc.
  EXPECT_EQ(evals.artifacts(0).info().metadata().at("task"), "ner");
  EXPECT_TRUE(evals.artifacts(0).info().metadata().contains("exact_match_json"));
  EXPECT_TRUE(evals.artifacts(1).info().metadata().contains("acc"));
  EXPECT_EQ(evals.artifacts(0).info().parent_ids(0), evals.artifacts(1).info().parent_ids(0));
  // `anvil models` shows each result under its model's lineage, with the scores.
  int code = -1;
  const std::string models = RunShell(anvil + "models --kind eval" + conn, &code);
  EXPECT_EQ(code, 0) << models;
  EXPECT_THAT(models, HasSubstr("SmolLM2-135M-Instruct.Q4_1.gguf"));
  EXPECT_THAT(models, HasSubstr("ner: exact_match_json 0.000000 [0.000000, 0.000000]"));
  EXPECT_THAT(models, HasSubstr("arith-mc: acc "));
}

TEST(ClusterEval, BadSpecsAreRefusedAndAMissingTaskFailsTheJobWithItsPath) {
  const std::string dir = MakeClusterWorkDir("eval_bad", 1);
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  v1::JobSpec spec;
  spec.mutable_eval()->set_task(dir + "/t.yaml");
  spec.mutable_eval()->set_output(dir + "/r.json");
  EXPECT_THAT(Submit(c, spec), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("spec.eval.model: required")));
  spec.mutable_eval()->set_model(dir + "/tiny.gguf");
  spec.mutable_eval()->set_limit(-1);
  EXPECT_THAT(Submit(c, spec), StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("spec.eval.limit: must be >= 0, got -1")));
  spec.mutable_eval()->set_limit(0);
  int code = -1;
  const std::string conn = absl::StrCat(" --coordinator ", c.address, " --token-file ", c.token_file);
  const std::string out = RunShell(BuildPath("cli/anvil") + " eval-job " + dir + "/tiny.gguf " +
                                       dir + "/t.yaml --out x.json --strategy bogus" + conn,
                                   &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("spec.eval.strategy: expected zero_shot, few_shot or "
                             "chain_of_thought, got \"bogus\""));

  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  spec.set_max_retries(0);
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job job, Submit(c, spec));
  FollowJob(c, job.job_id(), 120);
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job done, GetJob(c, job.job_id()));
  EXPECT_EQ(done.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(done.reason(), HasSubstr(dir + "/t.yaml"));
}

}  // namespace
}  // namespace anvil::testing
