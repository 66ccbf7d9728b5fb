// Quantize and deploy jobs on a real local cluster (anvil-coordinator, an anvil-worker and the
// anvil CLI as processes on loopback): `anvil quantize-job` writes the bytes `anvil quantize`
// writes and registers the output as a model whose parent is the input; `anvil deploy` starts
// anvil-server on the worker, prints its endpoints once it is ready, the server answers HTTP,
// and `anvil cancel` drains it: the job ends CANCELLED and the port closes.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <filesystem>
#include <regex>

#include "anvil/v1/artifacts.grpc.pb.h"
#include "model/tiny_model.h"
#include "tests/testing/cluster_harness.h"
#include "tests/testing/cluster_jobs.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"

namespace anvil::testing {
namespace {

using ::testing::HasSubstr;

bool PortAccepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

TEST(ClusterLifecycle, QuantizeJobWritesTheLocalBytesAndRegistersTheLineage) {
  const std::string dir = MakeClusterWorkDir("quantize_job", 1);
  TinyModelConfig cfg;
  cfg.all_f32 = true;
  ASSERT_THAT(WriteTinyLlamaGguf(cfg, dir + "/f32.gguf"), IsOk());
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  const std::string anvil = BuildPath("cli/anvil") + " ";
  const std::string conn = absl::StrCat(" --coordinator ", c.address, " --token-file ", c.token_file);
  int code = -1;
  std::string out = RunShell(anvil + "quantize " + dir + "/f32.gguf " + dir + "/local.gguf --type q4_1", &code);
  ASSERT_EQ(code, 0) << out;
  out = RunShell(anvil + "quantize-job " + dir + "/f32.gguf " + dir + "/job.gguf --type q4_1 --watch" + conn, &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("SUCCEEDED"));
  EXPECT_EQ(ReadFileOrDie(dir + "/job.gguf"), ReadFileOrDie(dir + "/local.gguf"));

  auto stub = v1::Artifacts::NewStub(grpc::CreateChannel(c.address,
                                                         grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  c.Prepare(&ctx);
  v1::ListArtifactsRequest req;
  req.set_kind("model");
  v1::ListArtifactsResponse models;
  ASSERT_TRUE(stub->ListArtifacts(&ctx, req, &models).ok());
  ASSERT_EQ(models.artifacts_size(), 2);  // the quantized model, then its F32 parent
  const v1::Artifact& q = models.artifacts(0);
  EXPECT_THAT(q.info().name(), HasSubstr("job.gguf"));
  EXPECT_EQ(q.info().metadata().at("quantization"), "q4_1");
  ASSERT_EQ(q.lineage_size(), 1);
  EXPECT_EQ(q.lineage(0).name(), "f32.gguf");

  // A bad type is refused before anything is sent, naming the field.
  out = RunShell(anvil + "quantize-job " + dir + "/f32.gguf " + dir + "/x.gguf --type q5_k" + conn, &code);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("spec.quantize.type: expected q8_0, q4_0 or q4_1, got \"q5_k\""));
}

TEST(ClusterLifecycle, DeployServesUntilCancelledThenDrains) {
  const std::string dir = MakeClusterWorkDir("deploy_job", 1);
  Coordinator c;
  c.dir = dir;
  ASSERT_THAT(c.Start(), IsOk());
  ANVIL_ASSERT_OK_AND_ASSIGN(Process w0, c.StartWorker("w0"));
  const std::string anvil = BuildPath("cli/anvil") + " ";
  const std::string conn = absl::StrCat(" --coordinator ", c.address, " --token-file ", c.token_file);
  int code = -1;
  // (--matmul fast --kv-type f16: the spec carries them to the server, which names them when
  // ready.)
  std::string out = RunShell(anvil + "deploy " + dir +
                                 "/tiny.gguf --threads 1 --matmul fast --kv-type f16 --wait-s 120" +
                                 conn,
                             &code);
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("(matmul fast, kv f16)"));
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("listening on grpc=[0-9.]+:([0-9]+) "
                                                    "http=[0-9.]+:([0-9]+)")))
      << out;
  const int http_port = std::stoi(m[2]);
  ASSERT_TRUE(std::regex_search(out, m, std::regex("deployed as (job-[0-9]+)"))) << out;
  const std::string job = m[1];
  // The server answers (the OpenAI model list names the model).
  const std::string models = RunShell(absl::StrCat(
      "python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:", http_port,
      "/v1/models').read().decode())\""), &code);
  EXPECT_EQ(code, 0) << models;
  EXPECT_THAT(models, HasSubstr("\"tiny\""));
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job running, GetJob(c, job));
  EXPECT_EQ(running.state(), v1::JOB_STATE_RUNNING);

  out = RunShell(anvil + "cancel " + job + conn, &code);
  EXPECT_EQ(code, 0) << out;
  FollowJob(c, job, 60);
  ANVIL_ASSERT_OK_AND_ASSIGN(v1::Job done, GetJob(c, job));
  EXPECT_EQ(done.state(), v1::JOB_STATE_CANCELLED);
  for (int i = 0; i < 100 && PortAccepts(http_port); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(PortAccepts(http_port));
}

}  // namespace
}  // namespace anvil::testing
