// MappedFile (open, fstat, mmap of a whole regular file) and WriteFileAtomically (mkstemp next to
// the target, write, fsync, rename, fsync of the directory). The error wording here is what the
// GGUF and safetensors tests assert.
#include "model/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace anvil {
namespace {

std::string ErrnoMessage(absl::string_view what, const std::string& path, int e) {
  return absl::StrCat(path, ": ", what, ": ", std::strerror(e));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// MappedFile

absl::StatusOr<MappedFile> MappedFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::FailedPreconditionError(ErrnoMessage("cannot open for reading", path, e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    close(fd);
    return absl::FailedPreconditionError(ErrnoMessage("cannot stat", path, e));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  MappedFile file;
  file.size_ = static_cast<uint64_t>(st.st_size);
  if (file.size_ > 0) {  // mmap refuses a length of 0
    void* m = mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      const int e = errno;
      close(fd);
      return absl::FailedPreconditionError(
          ErrnoMessage(absl::StrCat("cannot map ", file.size_, " bytes"), path, e));
    }
    file.mapping_ = m;
  }
  close(fd);  // the mapping keeps the file alive
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : mapping_(std::exchange(other.mapping_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    if (mapping_ != nullptr) munmap(mapping_, size_);
    mapping_ = std::exchange(other.mapping_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (mapping_ != nullptr) munmap(mapping_, size_);
}

void* MappedFile::Release() { return std::exchange(mapping_, nullptr); }

// ---------------------------------------------------------------------------------------------
// Atomic write

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::Span<const absl::Span<const uint8_t>> pieces) {
  // A temporary next to the target, so the final rename stays within one file system.
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = mkstemp(tmp.data());
  if (fd < 0) {
    const int e = errno;
    return absl::ErrnoToStatus(e, ErrnoMessage("cannot create a temporary file", path, e));
  }
  auto fail = [&](absl::string_view what) {
    const int e = errno;
    close(fd);
    unlink(tmp.c_str());
    return absl::ErrnoToStatus(e, ErrnoMessage(what, tmp, e));
  };
  if (fchmod(fd, 0644) != 0) return fail("cannot set permissions");  // mkstemp makes it 0600
  for (absl::Span<const uint8_t> piece : pieces) {
    size_t done = 0;
    while (done < piece.size()) {
      const ssize_t n = write(fd, piece.data() + done, piece.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) errno = EIO;
      if (n <= 0) return fail("write failed");
      done += static_cast<size_t>(n);
    }
  }
  if (fsync(fd) != 0) return fail("fsync failed");
  if (close(fd) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return absl::ErrnoToStatus(e, ErrnoMessage("close failed", tmp, e));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    unlink(tmp.c_str());
    return absl::ErrnoToStatus(
        e, ErrnoMessage("cannot rename the temporary file into place", path, e));
  }
  // Make the rename durable (best effort: some file systems refuse fsync on directories).
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, std::string_view contents) {
  const absl::Span<const uint8_t> piece(reinterpret_cast<const uint8_t*>(contents.data()),
                                        contents.size());
  return WriteFileAtomically(path, absl::MakeConstSpan(&piece, 1));
}

}  // namespace anvil
