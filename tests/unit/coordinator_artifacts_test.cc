// The Artifacts service over loopback, in-process: byte-exact upload/download of several
// chunks, resumed downloads, every refusal with its exact code (digest mismatch, size cap,
// oversized chunk, extra bytes, unknown parent, missing or wrong token) leaving nothing stored,
// lineage base -> adapter -> merged, one blob per content, and what survives a restart (rows
// and blobs) or does not (temp files of interrupted uploads).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "anvil/v1/artifacts.grpc.pb.h"
#include "coordinator/server.h"
#include "model/sha256.h"
#include "rpc/auth.h"
#include "tests/testing/status_matchers.h"

namespace anvil::coordinator {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
constexpr char kToken[] = "test-token-0123456789";
constexpr size_t kMiB = 1 << 20;

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

v1::ArtifactInfo Info(const std::string& name, const std::string& data,
                      const std::string& kind = "model",
                      const std::vector<std::string>& parents = {}) {
  v1::ArtifactInfo info;
  info.set_name(name);
  info.set_kind(kind);
  info.set_size_bytes(static_cast<int64_t>(data.size()));
  info.set_sha256(Sha256Hex(data));
  for (const std::string& p : parents) info.add_parent_ids(p);
  return info;
}

// Regular files under `dir`, recursively.
int CountFiles(const fs::path& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

class ArtifactsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("coordinator_artifacts_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Start();
  }
  void TearDown() override {
    server_.reset();
    fs::remove_all(dir_);
  }
  void Start() {
    CoordinatorOptions o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_ / "state.db").string();
    o.token = kToken;
    auto server = CoordinatorServer::Start(o);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    grpc::ChannelArguments args;
    args.SetMaxSendMessageSize(-1);
    args.SetMaxReceiveMessageSize(-1);
    stub_ = v1::Artifacts::NewStub(grpc::CreateCustomChannel(
        server_->address(), grpc::InsecureChannelCredentials(), args));
  }
  fs::path blobs() const { return dir_ / "state.db.blobs"; }

  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token = kToken) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    rpc::PrepareContext(ctx.get(), token, std::chrono::milliseconds(30000));
    return ctx;
  }
  // Sends `info` then `data` in chunks of `chunk` bytes.
  grpc::Status Upload(const v1::ArtifactInfo& info, const std::string& data, v1::Artifact* out,
                      size_t chunk = kMiB, const std::string& token = kToken) {
    auto ctx = Ctx(token);
    auto writer = stub_->Upload(ctx.get(), out);
    v1::UploadRequest req;
    *req.mutable_info() = info;
    bool open = writer->Write(req);
    for (size_t at = 0; open && at < data.size(); at += chunk) {
      req.set_chunk(data.substr(at, chunk));
      open = writer->Write(req);
    }
    if (open) writer->WritesDone();
    return writer->Finish();
  }
  std::string MustUpload(const v1::ArtifactInfo& info, const std::string& data) {
    v1::Artifact a;
    const grpc::Status s = Upload(info, data, &a);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return a.artifact_id();
  }
  // The bytes from `offset`; *chunks counts the messages.
  grpc::Status Download(const std::string& id, int64_t offset, std::string* data,
                        int* chunks = nullptr, const std::string& token = kToken) {
    auto ctx = Ctx(token);
    v1::DownloadRequest req;
    req.set_artifact_id(id);
    req.set_offset(offset);
    auto reader = stub_->Download(ctx.get(), req);
    v1::DownloadChunk c;
    int n = 0;
    while (reader->Read(&c)) {
      EXPECT_EQ(c.offset(), offset + static_cast<int64_t>(data->size()));
      EXPECT_LE(c.data().size(), kMiB);
      if (n == 0) {
        EXPECT_EQ(c.sha256().size(), 64u);
      }
      data->append(c.data());
      ++n;
    }
    if (chunks != nullptr) *chunks = n;
    return reader->Finish();
  }
  v1::ListArtifactsResponse List(const std::string& kind = "", const std::string& job = "",
                                 const std::string& sha = "") {
    v1::ListArtifactsRequest req;
    req.set_kind(kind);
    req.set_job_id(job);
    req.set_sha256(sha);
    v1::ListArtifactsResponse resp;
    EXPECT_TRUE(stub_->ListArtifacts(Ctx().get(), req, &resp).ok());
    return resp;
  }
  // Nothing was stored: no row, no blob, no temp file.
  void ExpectNothingStored() {
    EXPECT_EQ(List().artifacts_size(), 0);
    EXPECT_EQ(CountFiles(blobs()), 0);
  }

  fs::path dir_;
  std::unique_ptr<CoordinatorServer> server_;
  std::unique_ptr<v1::Artifacts::Stub> stub_;
};

TEST_F(ArtifactsTest, UploadDownloadRoundTripIsByteExact) {
  const std::string data = RandomBytes(3 * kMiB + 12345, 1);
  v1::Artifact a;
  ASSERT_TRUE(Upload(Info("base.gguf", data), data, &a, 256 << 10).ok());
  EXPECT_EQ(a.artifact_id(), "art-000001");
  EXPECT_EQ(a.info().size_bytes(), static_cast<int64_t>(data.size()));
  EXPECT_GT(a.created_unix_ms(), 0);
  EXPECT_TRUE(fs::exists(blobs() / "sha256" / Sha256Hex(data).substr(0, 2) /
                         Sha256Hex(data).substr(2)));
  std::string got;
  int chunks = 0;
  ASSERT_TRUE(Download(a.artifact_id(), 0, &got, &chunks).ok());
  EXPECT_EQ(chunks, 4);
  EXPECT_TRUE(got == data);
  v1::GetArtifactRequest get;
  get.set_artifact_id(a.artifact_id());
  v1::Artifact again;
  ASSERT_TRUE(stub_->GetArtifact(Ctx().get(), get, &again).ok());
  EXPECT_EQ(again.info().sha256(), Sha256Hex(data));
  get.set_artifact_id("art-000099");
  EXPECT_EQ(stub_->GetArtifact(Ctx().get(), get, &again).error_code(), grpc::StatusCode::NOT_FOUND);
  // An empty file is an artifact too: one message with the size and digest, no data.
  got.clear();
  const std::string id = MustUpload(Info("empty", ""), "");
  ASSERT_TRUE(Download(id, 0, &got, &chunks).ok());
  EXPECT_EQ(chunks, 1);
  EXPECT_TRUE(got.empty());
}

TEST_F(ArtifactsTest, DownloadResumesFromAnOffset) {
  const std::string data = RandomBytes(2 * kMiB + 7, 2);
  const std::string id = MustUpload(Info("m.gguf", data), data);
  for (int64_t offset : {int64_t{1}, int64_t{kMiB}, int64_t{kMiB + 3},
                         static_cast<int64_t>(data.size())}) {
    std::string got;
    ASSERT_TRUE(Download(id, offset, &got).ok()) << offset;
    EXPECT_TRUE(got == data.substr(offset)) << offset;
  }
  std::string got;
  const grpc::Status s = Download(id, static_cast<int64_t>(data.size()) + 1, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_EQ(Download("art-000042", 0, &got).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ArtifactsTest, DigestMismatchIsDataLossAndStoresNothing) {
  const std::string data = RandomBytes(kMiB + 5, 3);
  v1::ArtifactInfo info = Info("x.gguf", data);
  info.set_sha256(std::string(64, '0'));
  v1::Artifact a;
  grpc::Status s = Upload(info, data, &a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(s.error_message(), HasSubstr("expected " + std::string(64, '0')));
  EXPECT_THAT(s.error_message(), HasSubstr("got " + Sha256Hex(data)));
  // Fewer bytes than declared is a mismatch too.
  s = Upload(Info("x.gguf", data), data.substr(0, 100), &a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(s.error_message(), HasSubstr("expected 1048581 bytes, got 100"));
  ExpectNothingStored();
}

TEST_F(ArtifactsTest, SizeOverTheCapIsResourceExhausted) {
  v1::ArtifactInfo info = Info("huge.gguf", "");
  info.set_size_bytes(kDefaultMaxArtifactBytes + 1);
  v1::Artifact a;
  const grpc::Status s = Upload(info, "", &a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("--max-artifact-bytes"));
  ExpectNothingStored();
}

TEST_F(ArtifactsTest, BadChunksAndFieldsAreInvalidArgument) {
  const std::string data = RandomBytes(kMiB + 1, 4);
  v1::Artifact a;
  grpc::Status s = Upload(Info("big-chunk", data), data, &a, kMiB + 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("chunk: 1048577 bytes"));
  // More bytes than declared.
  v1::ArtifactInfo info = Info("short", data);
  info.set_size_bytes(10);
  s = Upload(info, data, &a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("more bytes than declared"));
  info = Info("k", "x", "weights");
  EXPECT_EQ(Upload(info, "x", &a).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  info = Info("k", "x");
  info.set_sha256("abc");
  EXPECT_EQ(Upload(info, "x", &a).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  ExpectNothingStored();
}

TEST_F(ArtifactsTest, UnknownParentIsNotFound) {
  v1::Artifact a;
  const grpc::Status s = Upload(Info("adapter", "abc", "adapter", {"art-000007"}), "abc", &a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("parent_ids[0]: no artifact art-000007"));
  ExpectNothingStored();
}

TEST_F(ArtifactsTest, ListShowsLineageBaseAdapterMerged) {
  const std::string base = RandomBytes(1000, 5), adapter = RandomBytes(300, 6),
                    merged = RandomBytes(1000, 7);
  const std::string base_id = MustUpload(Info("tiny.gguf", base), base);
  v1::ArtifactInfo ai = Info("job-000001/adapter_model.safetensors", adapter, "adapter", {base_id});
  ai.set_job_id("job-000001");
  (*ai.mutable_metadata())["final_loss"] = "1.25";
  const std::string adapter_id = MustUpload(ai, adapter);
  v1::ArtifactInfo mi = Info("job-000001/merged-f16.gguf", merged, "model", {base_id, adapter_id});
  mi.set_job_id("job-000001");
  const std::string merged_id = MustUpload(mi, merged);

  v1::ListArtifactsResponse all = List();
  ASSERT_EQ(all.artifacts_size(), 3);
  EXPECT_EQ(all.artifacts(0).artifact_id(), merged_id);  // newest first
  EXPECT_EQ(all.artifacts(2).lineage_size(), 0);
  const v1::Artifact& a = all.artifacts(1);
  ASSERT_EQ(a.lineage_size(), 1);
  EXPECT_EQ(a.lineage(0).artifact_id(), base_id);
  EXPECT_EQ(a.info().metadata().at("final_loss"), "1.25");
  const v1::Artifact& m = all.artifacts(0);
  ASSERT_EQ(m.lineage_size(), 2);  // the base once, through both paths; root first
  EXPECT_EQ(m.lineage(0).artifact_id(), base_id);
  EXPECT_EQ(m.lineage(0).name(), "tiny.gguf");
  EXPECT_EQ(m.lineage(0).depth(), 2);
  EXPECT_EQ(m.lineage(1).artifact_id(), adapter_id);
  EXPECT_EQ(m.lineage(1).depth(), 1);
  EXPECT_EQ(m.lineage(1).parent_ids(0), base_id);

  EXPECT_EQ(List("adapter").artifacts_size(), 1);
  EXPECT_EQ(List("model", "job-000001").artifacts_size(), 1);
  EXPECT_EQ(List("", "", Sha256Hex(base)).artifacts(0).artifact_id(), base_id);
  EXPECT_EQ(List("", "", std::string(64, 'f')).artifacts_size(), 0);
  // Paging: one at a time, newest first, then an empty token.
  v1::ListArtifactsRequest req;
  req.set_page_size(1);
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    v1::ListArtifactsResponse page;
    ASSERT_TRUE(stub_->ListArtifacts(Ctx().get(), req, &page).ok());
    for (const auto& x : page.artifacts()) ids.push_back(x.artifact_id());
    if (page.next_page_token().empty()) break;
    req.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(ids, (std::vector<std::string>{merged_id, adapter_id, base_id}));
  req.set_page_token("bogus");
  v1::ListArtifactsResponse page;
  EXPECT_EQ(stub_->ListArtifacts(Ctx().get(), req, &page).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ArtifactsTest, SameContentIsOneBlob) {
  const std::string data = RandomBytes(kMiB / 2, 8);
  const std::string a = MustUpload(Info("one", data), data);
  const std::string b = MustUpload(Info("two", data, "file"), data);
  EXPECT_NE(a, b);  // two artifacts ...
  EXPECT_EQ(CountFiles(blobs() / "sha256"), 1);  // ... one blob
  EXPECT_EQ(MustUpload(Info("one", data), data), a);  // an identical upload is the same artifact
  EXPECT_EQ(List().artifacts_size(), 2);
  EXPECT_EQ(CountFiles(blobs() / "tmp"), 0);
}

TEST_F(ArtifactsTest, EveryMethodNeedsTheToken) {
  const std::string data = "bytes";
  const std::string id = MustUpload(Info("f", data, "file"), data);
  using Call = std::function<grpc::Status(const std::string& token)>;
  const std::vector<std::pair<std::string, Call>> calls = {
      {"Upload", [&](const std::string& t) { v1::Artifact a;
         return Upload(Info("g", "other", "file"), "other", &a, kMiB, t); }},
      {"Download", [&](const std::string& t) { std::string d; return Download(id, 0, &d, nullptr, t); }},
      {"GetArtifact", [&](const std::string& t) { v1::Artifact a; v1::GetArtifactRequest q;
         q.set_artifact_id(id); return stub_->GetArtifact(Ctx(t).get(), q, &a); }},
      {"ListArtifacts", [&](const std::string& t) { v1::ListArtifactsResponse r;
         return stub_->ListArtifacts(Ctx(t).get(), {}, &r); }},
  };
  for (const auto& [name, call] : calls) {
    for (const auto& [token, message] : {std::pair<std::string, std::string>{"", "missing bearer token"},
                                         {"wrong-token", "invalid bearer token"}}) {
      const grpc::Status s = call(token);
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << name << " token=" << token;
      EXPECT_EQ(s.error_message(), message) << name;
    }
  }
  EXPECT_EQ(List().artifacts_size(), 1);
  EXPECT_EQ(CountFiles(blobs()), 1);
}

TEST_F(ArtifactsTest, RestartKeepsArtifactsAndRemovesLeftoverTempFiles) {
  const std::string data = RandomBytes(kMiB + 99, 9);
  const std::string id = MustUpload(Info("keep.gguf", data), data);
  const std::string child = MustUpload(Info("child", "c", "file", {id}), "c");
  server_.reset();
  // What a kill -9 in the middle of an upload leaves behind.
  std::ofstream(blobs() / "tmp" / "upload-crashed") << "partial";
  ASSERT_EQ(CountFiles(blobs() / "tmp"), 1);
  Start();
  EXPECT_EQ(CountFiles(blobs() / "tmp"), 0);
  v1::ListArtifactsResponse all = List();
  ASSERT_EQ(all.artifacts_size(), 2);
  EXPECT_EQ(all.artifacts(0).lineage(0).artifact_id(), id);
  std::string got;
  ASSERT_TRUE(Download(id, 0, &got).ok());
  EXPECT_TRUE(got == data);
  // Numbering goes on after a restart.
  EXPECT_EQ(MustUpload(Info("third", "3", "file"), "3"), "art-000003");
  (void)child;
}

TEST_F(ArtifactsTest, AnAbandonedUploadLeavesNothing) {
  const std::string data = RandomBytes(3 * kMiB, 10);
  {
    auto ctx = Ctx();
    v1::Artifact a;
    auto writer = stub_->Upload(ctx.get(), &a);
    v1::UploadRequest req;
    *req.mutable_info() = Info("abandoned", data);
    ASSERT_TRUE(writer->Write(req));
    req.set_chunk(data.substr(0, kMiB));
    ASSERT_TRUE(writer->Write(req));
    ctx->TryCancel();
    EXPECT_FALSE(writer->Finish().ok());
  }
  // The server sees the cancellation asynchronously.
  for (int i = 0; i < 100 && CountFiles(blobs() / "tmp") > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ExpectNothingStored();
}

}  // namespace
}  // namespace anvil::coordinator
