// `anvil serve registry://NAME`: a real coordinator holds the SmolLM2 file as a "model" artifact
// (uploaded here through the Artifacts service); anvil serve fetches it by name into
// $ANVIL_HOME/models/<sha256>.gguf, checks it, and serves it: greedy output equals serving the
// original path.
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "anvil/v1/artifacts.grpc.pb.h"
#include "model/sha256.h"
#include "tests/testing/server_harness.h"

namespace anvil::testing {
namespace {

using Json = nlohmann::json;

absl::StatusOr<v1::Artifact> UploadModel(const Coordinator& coord, const std::string& path,
                                         const std::string& name) {
  const std::string bytes = ReadFileOrDie(path);
  Sha256 h;
  h.Update(bytes);
  auto stub = v1::Artifacts::NewStub(
      grpc::CreateChannel(coord.address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  coord.Prepare(&ctx, 300);
  v1::Artifact out;
  auto writer = stub->Upload(&ctx, &out);
  v1::UploadRequest req;
  v1::ArtifactInfo* info = req.mutable_info();
  info->set_name(name);
  info->set_kind("model");
  info->set_size_bytes(static_cast<int64_t>(bytes.size()));
  info->set_sha256(h.FinishHex());
  if (!writer->Write(req)) return absl::InternalError("upload: first write failed");
  for (size_t at = 0; at < bytes.size(); at += 1 << 20) {
    v1::UploadRequest chunk;
    chunk.set_chunk(bytes.substr(at, 1 << 20));
    if (!writer->Write(chunk)) break;
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return absl::InternalError("upload: " + s.error_message());
  return out;
}

TEST(ServerRegistryTest, ServesAModelFetchedFromTheRegistry) {
  Coordinator coord;
  coord.dir = MakeTempDir("server_registry");
  ASSERT_TRUE(coord.Start().ok());
  absl::StatusOr<v1::Artifact> art = UploadModel(coord, Q41ModelPath(), "models/smol-q41.gguf");
  ASSERT_TRUE(art.ok()) << art.status();
  const std::string home = coord.dir + "/home";
  setenv("ANVIL_HOME", home.c_str(), 1);  // inherited by the anvil serve process
  absl::StatusOr<Process> p = Process::Start(
      {BuildPath("cli/anvil"), "serve", "registry://smol-q41.gguf", "--coordinator", coord.address,
       "--coordinator-token-file", coord.token_file, "--port", "-1", "--http-port", "0",
       "--model-id", "smol"});
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<std::string> line = p->ReadUntil("anvil-server listening on ", 300);
  ASSERT_TRUE(line.ok()) << line.status();
  ASSERT_TRUE(p->ReadUntil("anvil-server ready", 120).ok());
  const std::string local = home + "/models/" + art->info().sha256() + ".gguf";
  EXPECT_EQ(ReadFileOrDie(local), ReadFileOrDie(Q41ModelPath()));
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(line->substr(line->rfind(':') + 1), &port)) << *line;
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(120, 0);
  const std::string prompt = "The capital of France is";
  httplib::Result r = c.Post(
      "/v1/completions",
      Json{{"model", "smol"}, {"prompt", prompt}, {"max_tokens", 12}, {"temperature", 0}}.dump(),
      "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  absl::StatusOr<std::string> want = AnvilGenerate(prompt, 12, /*chat=*/false);
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(Json::parse(r->body)["choices"][0]["text"], *want);
  p->Kill(SIGTERM);
  EXPECT_EQ(p->Wait(60), 0);

  // An unknown name: a clear NOT_FOUND, exit 1.
  int rc = 0;
  const std::string out = RunShell(
      absl::StrCat(BuildPath("cli/anvil"), " serve registry://nope.gguf --coordinator ",
                   coord.address, " --coordinator-token-file ", coord.token_file),
      &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("NOT_FOUND: no artifact named 'nope.gguf'"), std::string::npos) << out;
}

}  // namespace
}  // namespace anvil::testing
