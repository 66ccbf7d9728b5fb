// ArtifactUploader: digest first (the server checks size and SHA-256 at the end), then the info
// message and 1 MiB chunks on one client stream. Uploads are idempotent on the server, so a
// retry after UNAVAILABLE (a coordinator restart) cannot register an artifact twice.
#include "worker/artifact_upload.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "model/sha256.h"
#include "rpc/auth.h"
#include "rpc/status.h"

namespace anvil::worker {
namespace {

namespace fs = std::filesystem;

constexpr size_t kChunkBytes = 1 << 20;             // the server's limit per message
constexpr size_t kMaxPeftConfigBytes = 60 << 10;    // under the server's metadata value cap

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (s.size() > max) return absl::InvalidArgumentError(absl::StrCat(path, ": over ", max, " bytes"));
  return s;
}

}  // namespace

absl::StatusOr<FileDigest> DigestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open for upload"));
  Sha256 h;
  FileDigest d;
  std::string buf(kChunkBytes, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize n = in.gcount();
    if (n <= 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
    d.size_bytes += n;
  }
  if (in.bad()) return absl::InternalError(absl::StrCat(path, ": read error"));
  d.sha256 = h.FinishHex();
  return d;
}

ArtifactUploader::ArtifactUploader(std::shared_ptr<grpc::Channel> channel, std::string token,
                                   UploadOptions options)
    : stub_(v1::Artifacts::NewStub(std::move(channel))),
      token_(std::move(token)),
      options_(options) {}

template <typename T, typename Once>
absl::StatusOr<T> ArtifactUploader::Retry(Once once) {
  const auto give_up = std::chrono::steady_clock::now() + options_.retry_for;
  std::chrono::milliseconds backoff = options_.first_backoff;
  for (;;) {
    absl::StatusOr<T> r = once();
    if (r.ok() || !absl::IsUnavailable(r.status()) ||
        std::chrono::steady_clock::now() + backoff > give_up) {
      return r;
    }
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

absl::StatusOr<std::optional<v1::Artifact>> ArtifactUploader::FindBySha256(
    const std::string& sha256) {
  return Retry<std::optional<v1::Artifact>>([&] { return FindOnce(sha256); });
}

absl::StatusOr<std::optional<v1::Artifact>> ArtifactUploader::FindOnce(
    const std::string& sha256) {
  v1::ListArtifactsRequest req;
  req.set_sha256(sha256);
  req.set_page_size(100);
  v1::ListArtifactsResponse resp;
  grpc::ClientContext ctx;
  rpc::PrepareContext(&ctx, token_, options_.base_deadline);
  if (grpc::Status s = stub_->ListArtifacts(&ctx, req, &resp); !s.ok()) return rpc::FromGrpc(s);
  if (resp.artifacts().empty()) return std::optional<v1::Artifact>();
  for (const v1::Artifact& a : resp.artifacts()) {
    if (a.info().kind() == "model") return std::optional<v1::Artifact>(a);
  }
  return std::optional<v1::Artifact>(resp.artifacts(0));
}

absl::StatusOr<v1::Artifact> ArtifactUploader::UploadOnce(const std::string& path,
                                                          const v1::ArtifactInfo& info) {
  const auto deadline =
      options_.base_deadline +
      std::chrono::milliseconds(static_cast<int64_t>(
          1000.0 * static_cast<double>(info.size_bytes()) / options_.min_bytes_per_s));
  grpc::ClientContext ctx;
  rpc::PrepareContext(&ctx, token_, deadline);
  v1::Artifact artifact;
  std::unique_ptr<grpc::ClientWriter<v1::UploadRequest>> writer = stub_->Upload(&ctx, &artifact);
  v1::UploadRequest req;
  *req.mutable_info() = info;
  // A failed Write means the stream is over; Finish says why.
  if (writer->Write(req)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      ctx.TryCancel();
      (void)writer->Finish();
      return absl::NotFoundError(absl::StrCat(path, ": cannot open for upload"));
    }
    std::string buf(kChunkBytes, '\0');
    bool open = true;
    while (open && in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const std::streamsize n = in.gcount();
      if (n <= 0) break;
      req.set_chunk(buf.data(), static_cast<size_t>(n));
      open = writer->Write(req);
    }
    if (open) writer->WritesDone();
  }
  const grpc::Status s = writer->Finish();
  if (!s.ok()) return rpc::FromGrpc(s);
  return artifact;
}

absl::StatusOr<v1::Artifact> ArtifactUploader::UploadFile(const std::string& path,
                                                          v1::ArtifactInfo info) {
  absl::StatusOr<FileDigest> d = DigestFile(path);
  if (!d.ok()) return d.status();
  info.set_size_bytes(d->size_bytes);
  info.set_sha256(d->sha256);
  absl::StatusOr<v1::Artifact> a = Retry<v1::Artifact>([&] { return UploadOnce(path, info); });
  if (!a.ok()) {
    return absl::Status(a.status().code(),
                        absl::StrCat("uploading ", path, ": ", a.status().message()));
  }
  return a;
}

absl::StatusOr<std::string> EnsureModelArtifact(ArtifactUploader& uploader,
                                                const std::string& path) {
  // Looked up by content first, so a large model crosses the network once.
  absl::StatusOr<FileDigest> digest = DigestFile(path);
  if (!digest.ok()) return digest.status();
  absl::StatusOr<std::optional<v1::Artifact>> stored = uploader.FindBySha256(digest->sha256);
  if (!stored.ok()) return stored.status();
  if (stored->has_value()) return (*stored)->artifact_id();
  v1::ArtifactInfo info;
  info.set_name(fs::path(path).filename().string());
  info.set_kind("model");
  (*info.mutable_metadata())["source_path"] = path;
  absl::StatusOr<v1::Artifact> a = uploader.UploadFile(path, std::move(info));
  if (!a.ok()) return a.status();
  return a->artifact_id();
}

absl::StatusOr<std::string> UploadEvalResult(ArtifactUploader& uploader, const EvalOutputs& run) {
  absl::StatusOr<std::string> model_id = EnsureModelArtifact(uploader, run.model);
  if (!model_id.ok()) return model_id.status();
  v1::ArtifactInfo info;
  info.set_name(absl::StrCat(run.job_id, "/", fs::path(run.result).filename().string()));
  info.set_kind("eval");
  info.set_job_id(run.job_id);
  info.add_parent_ids(*model_id);
  for (const auto& [k, v] : run.metrics) (*info.mutable_metadata())[k] = v;
  absl::StatusOr<v1::Artifact> a = uploader.UploadFile(run.result, std::move(info));
  if (!a.ok()) return a.status();
  return a->artifact_id();
}

absl::StatusOr<std::vector<std::string>> UploadFinetuneOutputs(ArtifactUploader& uploader,
                                                               const FinetuneOutputs& run) {
  std::vector<std::string> ids;
  absl::StatusOr<std::string> base = EnsureModelArtifact(uploader, run.base_model);
  if (!base.ok()) return base.status();
  const std::string base_id = *base;
  ids.push_back(base_id);

  auto job_info = [&](const std::string& file, const std::string& kind) {
    v1::ArtifactInfo info;
    info.set_name(absl::StrCat(run.job_id, "/", fs::path(file).filename().string()));
    info.set_kind(kind);
    info.set_job_id(run.job_id);
    for (const auto& [k, v] : run.metrics) (*info.mutable_metadata())[k] = v;
    return info;
  };
  // Adapters first: a merged model names them as parents.
  std::vector<std::string> adapter_ids;
  std::vector<std::string> merged;
  for (const std::string& out : run.outputs) {
    const std::string file = fs::path(out).filename().string();
    std::error_code ec;
    if (fs::is_directory(out, ec)) {
      const std::string weights = out + "/adapter_model.safetensors";
      if (!fs::exists(weights, ec)) continue;  // not a PEFT adapter: nothing to register
      v1::ArtifactInfo info = job_info(weights, "adapter");
      (*info.mutable_metadata())["format"] = "peft";
      absl::StatusOr<std::string> config =
          ReadSmallFile(out + "/adapter_config.json", kMaxPeftConfigBytes);
      if (config.ok()) (*info.mutable_metadata())["peft_config"] = *config;
      info.add_parent_ids(base_id);
      absl::StatusOr<v1::Artifact> a = uploader.UploadFile(weights, std::move(info));
      if (!a.ok()) return a.status();
      adapter_ids.push_back(a->artifact_id());
    } else if (absl::StartsWith(file, "adapter") && absl::EndsWith(file, ".gguf")) {
      v1::ArtifactInfo info = job_info(out, "adapter");
      (*info.mutable_metadata())["format"] = "gguf-lora";
      info.add_parent_ids(base_id);
      absl::StatusOr<v1::Artifact> a = uploader.UploadFile(out, std::move(info));
      if (!a.ok()) return a.status();
      adapter_ids.push_back(a->artifact_id());
    } else if (absl::EndsWith(file, ".gguf")) {
      merged.push_back(out);
    }
  }
  ids.insert(ids.end(), adapter_ids.begin(), adapter_ids.end());
  for (const std::string& out : merged) {
    v1::ArtifactInfo info = job_info(out, "model");
    info.add_parent_ids(base_id);
    for (const std::string& a : adapter_ids) info.add_parent_ids(a);
    absl::StatusOr<v1::Artifact> a = uploader.UploadFile(out, std::move(info));
    if (!a.ok()) return a.status();
    ids.push_back(a->artifact_id());
  }
  return ids;
}

}  // namespace anvil::worker
