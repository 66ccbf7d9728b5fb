// anvil.v1.Artifacts: the registry's transport. Upload feeds each chunk to an ArtifactUpload
// as it arrives and commits when the client closes its side; Download reads 1 MiB at a time,
// one write in flight. gRPC runs one reaction of a call at a time, so the reactors hold no lock.
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/services.h"
#include "rpc/status.h"

namespace anvil::coordinator {
namespace {

class UploadReactor : public grpc::ServerReadReactor<v1::UploadRequest> {
 public:
  UploadReactor(grpc::CallbackServerContext* ctx, ArtifactStore* store, v1::Artifact* response)
      : ctx_(ctx), store_(store), response_(response) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return Close();  // the client closed its side (or the call broke)
    const absl::Status s = Consume();
    if (!s.ok()) {
      // Drop the upload (and its temp file) before the client learns of the failure, so that
      // "refused" means "nothing left on disk" by the time it hears it (OnDone may run later).
      upload_.reset();
      return Finish(rpc::ToGrpc(s));
    }
    StartRead(&request_);
  }

  void OnDone() override { delete this; }

 private:
  absl::Status Consume() {
    if (request_.has_info()) {
      if (upload_ != nullptr) {
        return absl::InvalidArgumentError("info: only the first message may carry it");
      }
      absl::StatusOr<std::unique_ptr<ArtifactUpload>> u = store_->BeginUpload(request_.info());
      if (!u.ok()) return u.status();
      upload_ = std::move(*u);
      return absl::OkStatus();
    }
    if (upload_ == nullptr) {
      return absl::InvalidArgumentError("the first message must carry info, not a chunk");
    }
    if (!request_.has_chunk()) {
      return absl::InvalidArgumentError("a message with neither info nor chunk");
    }
    return upload_->Append(request_.chunk());
  }

  void Close() {
    if (ctx_->IsCancelled()) {
      upload_.reset();
      return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "upload cancelled"));
    }
    if (upload_ == nullptr) {
      return Finish(rpc::ToGrpc(
          absl::InvalidArgumentError("the stream ended before its first message (info)")));
    }
    absl::StatusOr<v1::Artifact> a = upload_->Commit();
    if (a.ok()) *response_ = std::move(*a);
    Finish(rpc::ToGrpc(a.status()));
  }

  grpc::CallbackServerContext* const ctx_;
  ArtifactStore* const store_;
  v1::Artifact* const response_;
  v1::UploadRequest request_;
  std::unique_ptr<ArtifactUpload> upload_;
};

class DownloadReactor : public grpc::ServerWriteReactor<v1::DownloadChunk> {
 public:
  explicit DownloadReactor(std::unique_ptr<ArtifactReader> reader) : reader_(std::move(reader)) {
    chunk_.set_size_bytes(reader_->size());
    chunk_.set_sha256(reader_->artifact().info().sha256());
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "stream broken"));
    if (reader_->offset() >= reader_->size()) return Finish(grpc::Status::OK);
    chunk_.Clear();
    WriteNext();
  }

  void OnDone() override { delete this; }

 private:
  // The first chunk is sent even when empty: it carries the size and digest.
  void WriteNext() {
    chunk_.set_offset(reader_->offset());
    absl::StatusOr<std::string> data = reader_->Read(kMaxArtifactChunkBytes);
    if (!data.ok()) return Finish(rpc::ToGrpc(data.status()));
    chunk_.set_data(std::move(*data));
    StartWrite(&chunk_);
  }

  std::unique_ptr<ArtifactReader> reader_;
  v1::DownloadChunk chunk_;
};

// A streaming call that only finishes with `s`.
template <typename Base>
class Failed : public Base {
 public:
  explicit Failed(const absl::Status& s) { this->Finish(rpc::ToGrpc(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerReadReactor<v1::UploadRequest>* ArtifactsService::Upload(
    grpc::CallbackServerContext* ctx, v1::Artifact* response) {
  const absl::Status s = deps_.auth->Check(*ctx);
  if (!s.ok()) return new Failed<grpc::ServerReadReactor<v1::UploadRequest>>(s);
  return new UploadReactor(ctx, deps_.artifacts, response);
}

grpc::ServerWriteReactor<v1::DownloadChunk>* ArtifactsService::Download(
    grpc::CallbackServerContext* ctx, const v1::DownloadRequest* request) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) {
    absl::StatusOr<std::unique_ptr<ArtifactReader>> reader =
        deps_.artifacts->OpenForRead(request->artifact_id(), request->offset());
    if (reader.ok()) return new DownloadReactor(std::move(*reader));
    s = reader.status();
  }
  return new Failed<grpc::ServerWriteReactor<v1::DownloadChunk>>(s);
}

grpc::ServerUnaryReactor* ArtifactsService::GetArtifact(grpc::CallbackServerContext* ctx,
                                                        const v1::GetArtifactRequest* request,
                                                        v1::Artifact* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) {
    absl::StatusOr<v1::Artifact> a = deps_.artifacts->Get(request->artifact_id());
    if (a.ok()) *response = std::move(*a);
    s = a.status();
  }
  return FinishNow(ctx, s);
}

grpc::ServerUnaryReactor* ArtifactsService::ListArtifacts(grpc::CallbackServerContext* ctx,
                                                          const v1::ListArtifactsRequest* request,
                                                          v1::ListArtifactsResponse* response) {
  absl::Status s = deps_.auth->Check(*ctx);
  if (s.ok()) {
    ArtifactFilter f;
    f.kind = request->kind();
    f.job_id = request->job_id();
    f.sha256 = request->sha256();
    f.page_size = request->page_size();
    f.page_token = request->page_token();
    absl::StatusOr<ArtifactPage> page = deps_.artifacts->List(f);
    if (page.ok()) {
      for (v1::Artifact& a : page->artifacts) *response->add_artifacts() = std::move(a);
      response->set_next_page_token(page->next_page_token);
    }
    s = page.status();
  }
  return FinishNow(ctx, s);
}

}  // namespace anvil::coordinator
