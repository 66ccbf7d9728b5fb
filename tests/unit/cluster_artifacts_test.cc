// The artifact registry end to end with real processes: a worker finishes a LoRA job and
// registers the base model, the PEFT adapter (parent: the base) and the merged GGUF (parents:
// both); ListArtifacts shows that lineage, Download gives the bytes on disk, a second job on the
// same base reuses the stored base instead of uploading it again, and the anvil CLI lists
// (`anvil models`) and fetches (`anvil download`) them.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "anvil/v1/artifacts.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/cluster_jobs.h"
#include "tests/testing/status_matchers.h"

namespace anvil::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Recipe(const std::string& out, int steps) {
  return absl::StrCat(R"(model: tiny.gguf
method: lora
data: {train: chat.jsonl, max_length: 64}
lora: {rank: 4, alpha: 8}
optim: {lr: 0.01}
train: {steps: )", steps, R"(, micro_batch: 2, grad_accum: 1, threads: 1, seed: 7}
checkpoint: {every: 0}
output: {dir: )", out, R"(, adapter: [peft], merged: f16}
)");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ClusterArtifacts : public ::testing::Test {
 protected:
  std::unique_ptr<v1::Artifacts::Stub> Stub() const {
    return v1::Artifacts::NewStub(
        grpc::CreateChannel(coord_.address, grpc::InsecureChannelCredentials()));
  }
  v1::ListArtifactsResponse List(const std::string& job = "") const {
    grpc::ClientContext ctx;
    coord_.Prepare(&ctx);
    v1::ListArtifactsRequest req;
    req.set_job_id(job);
    v1::ListArtifactsResponse resp;
    const grpc::Status s = Stub()->ListArtifacts(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  std::string Download(const std::string& id) const {
    grpc::ClientContext ctx;
    coord_.Prepare(&ctx);
    v1::DownloadRequest req;
    req.set_artifact_id(id);
    auto reader = Stub()->Download(&ctx, req);
    std::string data;
    v1::DownloadChunk c;
    while (reader->Read(&c)) data += c.data();
    const grpc::Status s = reader->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    return data;
  }
  // Runs a job to success and returns it.
  v1::Job RunJob(const std::string& out, int steps) {
    absl::StatusOr<v1::Job> job = Submit(coord_, FinetuneJob(dir_, Recipe(out, steps), 1));
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return {};
    FollowJob(coord_, job->job_id(), 300);
    absl::StatusOr<v1::Job> done = GetJob(coord_, job->job_id());
    EXPECT_TRUE(done.ok()) << done.status();
    EXPECT_EQ(done->state(), v1::JOB_STATE_SUCCEEDED) << done->reason();
    return *done;
  }

  std::string dir_;
  Coordinator coord_;
};

TEST_F(ClusterArtifacts, FinishedJobRegistersBaseAdapterAndMergedWithLineage) {
  dir_ = MakeClusterWorkDir("artifacts");
  coord_.dir = dir_;
  ASSERT_THAT(coord_.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, coord_.StartWorker("w0"));
  const v1::Job job = RunJob("out1", 3);

  // The job's outputs name the artifacts: base, adapter, merged.
  std::vector<std::string> artifact_outputs;
  for (const std::string& o : job.outputs()) {
    if (o.rfind("artifact:", 0) == 0) artifact_outputs.push_back(o.substr(9));
  }
  ASSERT_EQ(artifact_outputs.size(), 3u) << job.DebugString();

  v1::ListArtifactsResponse all = List();
  ASSERT_EQ(all.artifacts_size(), 3);
  const v1::Artifact merged = all.artifacts(0);  // newest first (copies: `all` is reused)
  const v1::Artifact adapter = all.artifacts(1);
  const v1::Artifact base = all.artifacts(2);
  EXPECT_EQ(base.info().kind(), "model");
  EXPECT_EQ(base.info().name(), "tiny.gguf");
  EXPECT_EQ(base.lineage_size(), 0);
  EXPECT_EQ(adapter.info().kind(), "adapter");
  EXPECT_EQ(adapter.info().job_id(), job.job_id());
  EXPECT_EQ(adapter.info().name(), job.job_id() + "/adapter_model.safetensors");
  EXPECT_EQ(adapter.info().metadata().at("steps"), "3");
  EXPECT_TRUE(adapter.info().metadata().count("final_loss"));
  EXPECT_THAT(adapter.info().metadata().at("peft_config"), HasSubstr("\"r\""));
  ASSERT_EQ(adapter.lineage_size(), 1);
  EXPECT_EQ(adapter.lineage(0).artifact_id(), base.artifact_id());
  EXPECT_EQ(merged.info().kind(), "model");
  EXPECT_EQ(merged.info().name(), job.job_id() + "/merged-f16.gguf");
  ASSERT_EQ(merged.lineage_size(), 2);
  EXPECT_EQ(merged.lineage(0).artifact_id(), base.artifact_id());
  EXPECT_EQ(merged.lineage(1).artifact_id(), adapter.artifact_id());
  EXPECT_EQ(artifact_outputs,
            (std::vector<std::string>{base.artifact_id(), adapter.artifact_id(),
                                      merged.artifact_id()}));

  // The stored bytes are the files on disk.
  EXPECT_TRUE(Download(base.artifact_id()) == ReadFile(dir_ + "/tiny.gguf"));
  EXPECT_TRUE(Download(adapter.artifact_id()) ==
              ReadFile(dir_ + "/out1/adapter/adapter_model.safetensors"));
  EXPECT_TRUE(Download(merged.artifact_id()) == ReadFile(dir_ + "/out1/merged-f16.gguf"));

  // A second job on the same base: the base is found by its digest, not uploaded again.
  const v1::Job job2 = RunJob("out2", 2);
  all = List();
  ASSERT_EQ(all.artifacts_size(), 5);
  int bases = 0;
  for (const v1::Artifact& a : all.artifacts()) bases += a.info().name() == "tiny.gguf";
  EXPECT_EQ(bases, 1);
  const v1::ListArtifactsResponse second = List(job2.job_id());
  ASSERT_EQ(second.artifacts_size(), 2);
  for (const v1::Artifact& a : second.artifacts()) {
    ASSERT_GE(a.lineage_size(), 1);
    EXPECT_EQ(a.lineage(0).artifact_id(), base.artifact_id());
  }

  // The CLI: the table with lineage, and a checked download.
  const std::string anvil = absl::StrCat(BuildPath("cli/anvil"), " ");
  const std::string conn =
      absl::StrCat(" --coordinator ", coord_.address, " --token-file ", coord_.token_file);
  int code = -1;
  std::string out = RunShell(anvil + "models" + conn, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("LINEAGE"));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("tiny.gguf -> ", job.job_id(),
                                          "/adapter_model.safetensors")));
  EXPECT_THAT(out, HasSubstr(merged.artifact_id()));
  out = RunShell(anvil + "models --kind adapter" + conn, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, Not(HasSubstr("merged-f16.gguf")));
  const std::string fetched = dir_ + "/fetched.safetensors";
  out = RunShell(anvil + "download " + adapter.artifact_id() + " --out " + fetched + conn, &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_TRUE(ReadFile(fetched) == ReadFile(dir_ + "/out1/adapter/adapter_model.safetensors"));
  EXPECT_FALSE(std::filesystem::exists(fetched + ".part"));
  out = RunShell(anvil + "download art-999999 --out " + fetched + conn, &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("NOT_FOUND"));
}

}  // namespace
}  // namespace anvil::testing
