// File plumbing shared by the model readers and writers: MappedFile (a read-only mmap of a whole
// regular file, used by GgufFile and SafetensorsFile) and WriteFileAtomically (the crash-safe
// write behind GgufWriter, SafetensorsWriter, checkpoints and train/ exports). Parsing and
// serialization stay with the formats.
#ifndef ANVIL_MODEL_FILE_IO_H_
#define ANVIL_MODEL_FILE_IO_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace anvil {

// A read-only private mapping of a whole regular file; unmaps on destruction (movable, not
// copyable). An empty file has no mapping: data() is null and size() is 0.
class MappedFile {
 public:
  // NotFound "<path>: no such file"; InvalidArgument "<path>: not a regular file";
  // FailedPrecondition naming the path and errno when it cannot be opened, stat'ed or mapped.
  static absl::StatusOr<MappedFile> Open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return static_cast<const uint8_t*>(mapping_); }
  uint64_t size() const { return size_; }

  // Hands the mapping (null for an empty file) to the caller, who must munmap(it, size()) once
  // done; this object keeps size() and no longer unmaps. For owners that store the raw mapping.
  void* Release();

 private:
  void* mapping_ = nullptr;  // non-null when we own an mmap of size_ bytes
  uint64_t size_ = 0;
};

// Writes the concatenation of `pieces` to `path` so that a reader sees either the old file or
// the complete new one: a temporary file in the same directory (mode 0644), fsync, rename over
// `path`, then fsync of the directory. The temporary is removed on failure. Errors carry the
// errno's code and name the path (or the temporary) and the errno.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::Span<const absl::Span<const uint8_t>> pieces);
absl::Status WriteFileAtomically(const std::string& path, std::string_view contents);

}  // namespace anvil

#endif  // ANVIL_MODEL_FILE_IO_H_
