// The worker's side of the artifact registry (proto/anvil/v1/artifacts.proto): stream a file to
// the coordinator's Artifacts service with a deadline sized to the file, retrying while the
// coordinator is unavailable, and register a finished fine-tune's outputs with their lineage
// (base model -> adapter -> merged model). The registry itself is coordinator/artifact_store.h.
#ifndef ANVIL_WORKER_ARTIFACT_UPLOAD_H_
#define ANVIL_WORKER_ARTIFACT_UPLOAD_H_

#include <grpcpp/channel.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "anvil/v1/artifacts.grpc.pb.h"

namespace anvil::worker {

struct UploadOptions {
  std::chrono::milliseconds base_deadline{60000};  // plus the file's size at min_bytes_per_s
  double min_bytes_per_s = 2.0 * (1 << 20);
  // UNAVAILABLE (the coordinator restarting) is retried for this long, with a backoff from
  // first_backoff doubling up to max_backoff; uploads are idempotent, so a retry is safe.
  std::chrono::milliseconds retry_for{60000};
  std::chrono::milliseconds first_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
};

struct FileDigest {
  int64_t size_bytes = 0;
  std::string sha256;  // lowercase hex
};
// NotFound / Internal naming the file.
absl::StatusOr<FileDigest> DigestFile(const std::string& path);

class ArtifactUploader {
 public:
  ArtifactUploader(std::shared_ptr<grpc::Channel> channel, std::string token,
                   UploadOptions options = {});

  // The newest stored artifact with these bytes (a "model" one when there is one), if any.
  absl::StatusOr<std::optional<v1::Artifact>> FindBySha256(const std::string& sha256);
  // Streams `path` as an artifact; `info`'s size and digest are filled in from the file.
  absl::StatusOr<v1::Artifact> UploadFile(const std::string& path, v1::ArtifactInfo info);

 private:
  absl::StatusOr<v1::Artifact> UploadOnce(const std::string& path, const v1::ArtifactInfo& info);
  absl::StatusOr<std::optional<v1::Artifact>> FindOnce(const std::string& sha256);
  // Calls `once` until it returns something other than UNAVAILABLE or retry_for has passed.
  template <typename T, typename Once>
  absl::StatusOr<T> Retry(Once once);

  std::unique_ptr<v1::Artifacts::Stub> stub_;
  const std::string token_;
  const UploadOptions options_;
};

// What a finished fine-tune leaves behind.
struct FinetuneOutputs {
  std::string job_id;
  std::string base_model;                      // the GGUF it trained on
  std::vector<std::string> outputs;            // train::RunResult::outputs
  std::map<std::string, std::string> metrics;  // e.g. final_loss, steps
};

// Registers `run`: the base model (kind "model", no job; skipped when its bytes are stored
// already, so a base is uploaded once), each adapter (kind "adapter", parent: the base; a PEFT
// directory is its adapter_model.safetensors, with adapter_config.json in the metadata) and a
// merged GGUF (kind "model", parents: the base and the adapters). Returns the artifact ids, base
// first. Unimplemented when the coordinator has no Artifacts service.
absl::StatusOr<std::vector<std::string>> UploadFinetuneOutputs(ArtifactUploader& uploader,
                                                               const FinetuneOutputs& run);

// The registry id of the model file at `path`: the stored artifact with its bytes, or a new
// "model" artifact (uploaded once; later calls find it by content).
absl::StatusOr<std::string> EnsureModelArtifact(ArtifactUploader& uploader,
                                                const std::string& path);

// What a finished eval job leaves behind.
struct EvalOutputs {
  std::string job_id;
  std::string model;                           // the GGUF it evaluated
  std::string result;                          // the result JSON file
  std::map<std::string, std::string> metrics;  // e.g. "task", "exact_match" -> "0.250000"
};

// Registers the result file as kind "eval" whose parent is the model (registered if it is not
// yet), so the model's scores can be listed with it. Returns the result's artifact id.
absl::StatusOr<std::string> UploadEvalResult(ArtifactUploader& uploader, const EvalOutputs& run);

}  // namespace anvil::worker

#endif  // ANVIL_WORKER_ARTIFACT_UPLOAD_H_
