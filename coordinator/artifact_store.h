// The artifact registry's core: content-addressed blob files plus one SQLite row per artifact
// (table `artifacts` in the coordinator's database, through a connection of its own). No gRPC
// here; coordinator/artifacts_service.cc adapts it to anvil.v1.Artifacts.
//
// Durability: an upload streams into <blob_dir>/tmp/, is hashed as it arrives, fsynced and
// renamed to <blob_dir>/sha256/<2 hex>/<62 hex> only after its size and digest check out, and
// only then gets its row. A kill -9 at any moment leaves at most a temp file (removed by the
// next Open) or a blob without a row (reused by the next upload of the same bytes), never a
// partial blob or a row without its blob.
#ifndef ANVIL_COORDINATOR_ARTIFACT_STORE_H_
#define ANVIL_COORDINATOR_ARTIFACT_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "anvil/v1/artifacts.pb.h"
#include "model/sha256.h"

struct sqlite3;

namespace anvil::coordinator {

inline constexpr size_t kMaxArtifactChunkBytes = 1 << 20;  // per upload message / download chunk
inline constexpr int64_t kDefaultMaxArtifactBytes = int64_t{16} << 30;

struct ArtifactStoreOptions {
  std::string db_path;   // the coordinator's SQLite file (the table is created when missing)
  std::string blob_dir;  // created when missing
  int64_t max_size_bytes = kDefaultMaxArtifactBytes;
};

struct ArtifactFilter {
  std::string kind, job_id, sha256;  // empty: any
  int page_size = 0;                 // 0: 50; at most 1000
  std::string page_token;
};

struct ArtifactPage {
  std::vector<v1::Artifact> artifacts;  // newest first, each with its lineage
  std::string next_page_token;          // empty on the last page
};

class ArtifactStore;

// One upload in progress, fed by one thread. Destroying it before a successful Commit removes
// its temp file.
class ArtifactUpload {
 public:
  ~ArtifactUpload();
  ArtifactUpload(const ArtifactUpload&) = delete;
  ArtifactUpload& operator=(const ArtifactUpload&) = delete;

  // InvalidArgument for a chunk over kMaxArtifactChunkBytes or one that brings the total past
  // the declared size; ResourceExhausted when the disk is full.
  absl::Status Append(absl::string_view chunk);
  // Checks size and digest (DataLoss naming expected and got; nothing stored), makes the blob
  // durable and adds (or finds) the artifact's row.
  absl::StatusOr<v1::Artifact> Commit();

  int64_t received() const { return received_; }

 private:
  friend class ArtifactStore;
  ArtifactUpload(ArtifactStore* store, v1::ArtifactInfo info, std::string temp_path, int fd)
      : store_(store), info_(std::move(info)), temp_path_(std::move(temp_path)), fd_(fd) {}
  void Discard();

  ArtifactStore* const store_;
  const v1::ArtifactInfo info_;
  const std::string temp_path_;
  int fd_;
  Sha256 hasher_;
  int64_t received_ = 0;
  bool done_ = false;  // committed or discarded
};

// A blob opened for a download, read by one thread.
class ArtifactReader {
 public:
  ~ArtifactReader();
  ArtifactReader(const ArtifactReader&) = delete;
  ArtifactReader& operator=(const ArtifactReader&) = delete;

  const v1::Artifact& artifact() const { return artifact_; }
  int64_t size() const { return artifact_.info().size_bytes(); }
  int64_t offset() const { return offset_; }
  // Up to `max` bytes from offset() (empty at the end); advances offset().
  absl::StatusOr<std::string> Read(size_t max);

 private:
  friend class ArtifactStore;
  ArtifactReader(v1::Artifact artifact, int fd, int64_t offset)
      : artifact_(std::move(artifact)), fd_(fd), offset_(offset) {}

  const v1::Artifact artifact_;
  const int fd_;
  int64_t offset_;
};

class ArtifactStore {
 public:
  // Creates the blob directory and the table when missing and removes leftover temp files of
  // uploads that a crash interrupted. FailedPrecondition when either cannot be opened.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(const ArtifactStoreOptions& options);
  ~ArtifactStore();
  ArtifactStore(const ArtifactStore&) = delete;
  ArtifactStore& operator=(const ArtifactStore&) = delete;

  // Validates `info` (InvalidArgument naming the field; ResourceExhausted over the size cap or
  // the free disk space; NotFound for an unknown parent) and opens a temp file for the bytes.
  absl::StatusOr<std::unique_ptr<ArtifactUpload>> BeginUpload(v1::ArtifactInfo info);
  // NotFound for an unknown id; OutOfRange for an offset past the end; DataLoss when the blob
  // is missing or has the wrong length.
  absl::StatusOr<std::unique_ptr<ArtifactReader>> OpenForRead(const std::string& artifact_id,
                                                              int64_t offset);
  absl::StatusOr<v1::Artifact> Get(const std::string& artifact_id);  // NotFound when unknown
  absl::StatusOr<ArtifactPage> List(const ArtifactFilter& filter);

  // Where the blob of `sha256_hex` lives (whether or not it exists).
  std::string BlobPath(const std::string& sha256_hex) const;
  const std::string& blob_dir() const { return options_.blob_dir; }
  int64_t removed_temp_files() const { return removed_temp_files_; }

 private:
  friend class ArtifactUpload;
  ArtifactStore(ArtifactStoreOptions options, sqlite3* db)
      : options_(std::move(options)), db_(db) {}
  // Adds the row for a committed blob, or returns the row whose info is identical.
  absl::StatusOr<v1::Artifact> Insert(const v1::ArtifactInfo& info);
  absl::Status CheckParentsLocked(const v1::ArtifactInfo& info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<v1::Artifact> LoadLocked(const std::string& artifact_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status AddLineageLocked(v1::Artifact* artifact) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const ArtifactStoreOptions options_;
  int64_t removed_temp_files_ = 0;
  // One connection, serialized by mu_; blob files are read and written outside it.
  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
};

// "art-000001" for 1; 0 for an id not of that form.
std::string ArtifactIdFromNumber(int64_t number);
int64_t ArtifactNumberFromId(absl::string_view id);

}  // namespace anvil::coordinator

#endif  // ANVIL_COORDINATOR_ARTIFACT_STORE_H_
