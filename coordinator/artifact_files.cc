// ArtifactUpload and ArtifactReader: the blob files of the artifact registry (a temp file
// written, hashed, fsynced and renamed into place; a blob read with pread). The rows are
// artifact_store.cc's.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "coordinator/artifact_store.h"
#include "kernels/core/status_macros.h"

namespace anvil::coordinator {
namespace {

namespace fs = std::filesystem;

absl::Status Errno(absl::string_view what, const std::string& path, int err) {
  std::string msg = absl::StrCat(path, ": ", what, ": ", std::strerror(err));
  if (err == ENOSPC || err == EDQUOT) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write", path, errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open directory", dir, errno);
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  return rc == 0 ? absl::OkStatus() : Errno("fsync directory", dir, err);
}


}  // namespace

// ---- ArtifactUpload ----

ArtifactUpload::~ArtifactUpload() { Discard(); }

void ArtifactUpload::Discard() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  if (!done_) unlink(temp_path_.c_str());
  done_ = true;
}

absl::Status ArtifactUpload::Append(absl::string_view chunk) {
  if (done_) return absl::FailedPreconditionError("upload already finished");
  if (chunk.size() > kMaxArtifactChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat("chunk: ", chunk.size(),
                                                   " bytes, more than the limit of ",
                                                   kMaxArtifactChunkBytes));
  }
  const int64_t total = received_ + static_cast<int64_t>(chunk.size());
  if (total > info_.size_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("more bytes than declared: size_bytes is ",
                                                   info_.size_bytes(), ", received ", total));
  }
  ANVIL_RETURN_IF_ERROR(WriteAll(fd_, chunk, temp_path_));
  hasher_.Update(chunk.data(), chunk.size());
  received_ = total;
  return absl::OkStatus();
}

absl::StatusOr<v1::Artifact> ArtifactUpload::Commit() {
  if (done_) return absl::FailedPreconditionError("upload already finished");
  if (received_ != info_.size_bytes()) {
    Discard();
    return absl::DataLossError(absl::StrCat(info_.name(), ": size mismatch: expected ",
                                            info_.size_bytes(), " bytes, got ", received_));
  }
  const std::string got = hasher_.FinishHex();
  if (got != info_.sha256()) {
    Discard();
    return absl::DataLossError(absl::StrCat(info_.name(), ": sha256 mismatch: expected ",
                                            info_.sha256(), ", got ", got));
  }
  if (fsync(fd_) != 0) return Errno("fsync", temp_path_, errno);
  close(fd_);
  fd_ = -1;
  const std::string blob = store_->BlobPath(got);
  const std::string dir = fs::path(blob).parent_path().string();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  struct stat st;
  if (stat(blob.c_str(), &st) == 0 && st.st_size == info_.size_bytes()) {
    // The same bytes are stored already (a blob of the right length and name is complete:
    // blobs appear only by rename after their check).
    Discard();
  } else {
    if (rename(temp_path_.c_str(), blob.c_str()) != 0) return Errno("rename to", blob, errno);
    done_ = true;
    ANVIL_RETURN_IF_ERROR(FsyncDir(dir));
  }
  done_ = true;
  return store_->Insert(info_);
}


ArtifactReader::~ArtifactReader() { close(fd_); }

absl::StatusOr<std::string> ArtifactReader::Read(size_t max) {
  const int64_t left = size() - offset_;
  std::string out(static_cast<size_t>(std::min<int64_t>(left, static_cast<int64_t>(max))), '\0');
  size_t have = 0;
  while (have < out.size()) {
    const ssize_t n = pread(fd_, out.data() + have, out.size() - have,
                            static_cast<off_t>(offset_ + static_cast<int64_t>(have)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("read", artifact_.artifact_id(), errno);
    if (n == 0) {
      return absl::DataLossError(absl::StrCat("blob of ", artifact_.artifact_id(),
                                              " ended early at byte ", offset_ + have));
    }
    have += static_cast<size_t>(n);
  }
  offset_ += static_cast<int64_t>(have);
  return out;
}

}  // namespace anvil::coordinator
