// Checkpoint files: the canonical checksum (see checkpoint.h), the atomic streamed write, the
// verifying read, and the directory helpers (newest complete checkpoint, keep-last-N pruning).
#include "train/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/core/status_macros.h"
#include "model/safetensors.h"
#include "model/sha256.h"

namespace anvil::train {
namespace {

namespace fs = std::filesystem;
using safetensors::ElementType;
using safetensors::SafetensorsFile;

constexpr char kReservedPrefix[] = "anvil.";
constexpr char kFilePrefix[] = "ckpt-";
constexpr char kFileSuffix[] = ".safetensors";
constexpr char kRefuse[] = "; refusing to resume from it";

// One tensor as the header describes it.
struct HeaderEntry {
  std::string_view name;
  const char* dtype;
  const std::vector<int64_t>* shape;
  uint64_t begin, end;
};

void PutU64(Sha256& h, uint64_t x) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(x >> (8 * i));
  h.Update(b, 8);
}
void PutString(Sha256& h, std::string_view s) {
  PutU64(h, s.size());
  h.Update(s);
}

// Starts the checksum with the canonical form of the header: a domain tag, the tensor count and
// each tensor (name, dtype, rank, dims, begin, end) in file order, then the count of metadata
// entries and each (key, value) sorted by key, anvil.sha256 excluded. The caller then feeds the
// data section.
Sha256 StartDigest(const std::vector<HeaderEntry>& tensors,
                   const std::map<std::string, std::string>& metadata) {
  Sha256 h;
  PutString(h, kCheckpointFormat);
  PutU64(h, tensors.size());
  for (const HeaderEntry& t : tensors) {
    PutString(h, t.name);
    PutString(h, t.dtype);
    PutU64(h, t.shape->size());
    for (int64_t d : *t.shape) PutU64(h, static_cast<uint64_t>(d));
    PutU64(h, t.begin);
    PutU64(h, t.end);
  }
  const size_t n_meta = metadata.size() - metadata.count(kCheckpointSha256Key);
  PutU64(h, n_meta);
  for (const auto& [k, v] : metadata) {
    if (k == kCheckpointSha256Key) continue;
    PutString(h, k);
    PutString(h, v);
  }
  return h;
}

// Untrusted text from a file, escaped and cut for a message.
std::string Shown(absl::string_view s) {
  constexpr size_t kMax = 16;
  return absl::StrCat("\"", absl::Utf8SafeCEscape(s.substr(0, kMax)), s.size() > kMax ? "..." : "",
                      "\"");
}

absl::Status Corrupt(const std::string& path, absl::string_view problem) {
  return absl::DataLossError(absl::StrCat(path, ": ", problem, kRefuse));
}

// Maps and verifies a checkpoint; returns the open file and its step.
absl::StatusOr<std::pair<std::unique_ptr<SafetensorsFile>, int64_t>> OpenVerified(
    const std::string& path) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> opened = SafetensorsFile::Open(path);
  if (!opened.ok()) {
    if (opened.status().code() != absl::StatusCode::kInvalidArgument) return opened.status();
    // The reader's message starts with the path already.
    return absl::DataLossError(
        absl::StrCat(opened.status().message(), " (truncated or corrupted checkpoint)", kRefuse));
  }
  std::unique_ptr<SafetensorsFile> file = *std::move(opened);
  const std::string* format = file->FindMetadata(kCheckpointFormatKey);
  if (format == nullptr || *format != kCheckpointFormat) {
    return Corrupt(path, absl::StrCat("not an ", kCheckpointFormat, " file (__metadata__ ",
                                      kCheckpointFormatKey, " is ",
                                      format == nullptr ? "missing" : Shown(*format), ")"));
  }
  const std::string* step_text = file->FindMetadata(kCheckpointStepKey);
  int64_t step = -1;
  if (step_text == nullptr ||
      std::from_chars(step_text->data(), step_text->data() + step_text->size(), step).ptr !=
          step_text->data() + step_text->size() ||
      step < 0) {
    return Corrupt(path, absl::StrCat("__metadata__ ", kCheckpointStepKey,
                                      " is missing or not a step number"));
  }
  const std::string* stored = file->FindMetadata(kCheckpointSha256Key);
  if (stored == nullptr) {
    return Corrupt(path, absl::StrCat("__metadata__ has no ", kCheckpointSha256Key, " checksum"));
  }
  std::vector<HeaderEntry> entries;
  entries.reserve(file->tensors().size());
  for (const safetensors::TensorView& t : file->tensors()) {
    if (t.dtype != ElementType::kF32) {
      return Corrupt(
          path, absl::StrCat("tensor \"", t.name, "\" is ", safetensors::ElementTypeName(t.dtype),
                             "; checkpoints hold F32 only"));
    }
    entries.push_back({t.name, safetensors::ElementTypeName(t.dtype), &t.shape, t.begin, t.end});
  }
  Sha256 h = StartDigest(entries, file->metadata());
  const absl::Span<const uint8_t> data = file->data_section();
  h.Update(data.data(), data.size());
  const std::string actual = h.FinishHex();
  if (actual != *stored) {
    return Corrupt(path, absl::StrCat("checksum mismatch (file corrupted or partially written; "
                                      "stored ", Shown(*stored), ", computed \"",
                                      actual.substr(0, 16), "...\")"));
  }
  return std::make_pair(std::move(file), step);
}

// Step number of a file named "ckpt-<digits>.safetensors", else -1.
int64_t StepFromFileName(const std::string& name) {
  if (!absl::StartsWith(name, kFilePrefix) || !absl::EndsWith(name, kFileSuffix)) return -1;
  const size_t n = name.size() - std::strlen(kFilePrefix) - std::strlen(kFileSuffix);
  if (n == 0 || n > 18) return -1;
  const char* begin = name.data() + std::strlen(kFilePrefix);
  int64_t step = -1;
  const auto [ptr, ec] = std::from_chars(begin, begin + n, step);
  if (ec != std::errc() || ptr != begin + n || step < 0) return -1;
  return step;
}

// (step, path) of the checkpoint files in `dir`, newest first; and leftover temporaries.
absl::Status ListDir(const std::string& dir, std::vector<std::pair<int64_t, std::string>>* ckpts,
                     std::vector<std::string>* temps) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no such checkpoint directory"));
  }
  fs::directory_iterator it(dir, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, ": cannot list the directory: ", ec.message()));
  }
  for (const fs::directory_entry& e : it) {
    const std::string name = e.path().filename().string();
    const int64_t step = StepFromFileName(name);
    if (step >= 0) {
      ckpts->emplace_back(step, e.path().string());
    } else if (temps != nullptr && absl::StartsWith(name, kFilePrefix) &&
               absl::StrContains(name, absl::StrCat(kFileSuffix, ".tmp."))) {
      temps->push_back(e.path().string());
    }
  }
  std::sort(ckpts->begin(), ckpts->end(), std::greater<>());
  return absl::OkStatus();
}

}  // namespace

const CheckpointTensor* Checkpoint::Find(std::string_view name) const {
  for (const CheckpointTensor& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::string CheckpointPath(const std::string& dir, int64_t step) {
  return absl::StrFormat("%s/%s%08d%s", dir, kFilePrefix, step, kFileSuffix);
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir_or_path, int64_t step,
                                            absl::Span<const CheckpointTensorRef> tensors,
                                            const std::map<std::string, std::string>& metadata) {
  if (step < 0) {
    return absl::InvalidArgumentError(absl::StrCat("checkpoint step ", step, " is negative"));
  }
  std::string path = dir_or_path;
  if (!absl::EndsWith(dir_or_path, kFileSuffix)) {
    std::error_code ec;
    fs::create_directories(dir_or_path, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat(dir_or_path, ": cannot create the checkpoint directory: ", ec.message()));
    }
    path = CheckpointPath(dir_or_path, step);
  }

  std::map<std::string, std::string> meta;
  for (const auto& [k, v] : metadata) {
    if (absl::StartsWith(k, kReservedPrefix)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": metadata key \"", k, "\" uses the reserved prefix \"", kReservedPrefix, "\""));
    }
    meta.emplace(k, v);
  }
  meta[kCheckpointFormatKey] = kCheckpointFormat;
  meta[kCheckpointStepKey] = absl::StrCat(step);

  // Reserved entries first, so a reader can see what the file is at a glance.
  safetensors::SafetensorsWriter writer;
  for (const char* key : {kCheckpointFormatKey, kCheckpointStepKey}) {
    ANVIL_RETURN_IF_ERROR(writer.SetMetadata(key, meta[key]));
  }
  ANVIL_RETURN_IF_ERROR(writer.SetMetadata(kCheckpointSha256Key, std::string(64, '0')));
  for (const auto& [k, v] : metadata) ANVIL_RETURN_IF_ERROR(writer.SetMetadata(k, v));

  // The writer packs tensors contiguously in insertion order; the digest describes that layout.
  std::vector<HeaderEntry> entries;
  entries.reserve(tensors.size());
  uint64_t offset = 0;
  for (const CheckpointTensorRef& t : tensors) {
    ANVIL_RETURN_IF_ERROR(writer.AddF32View(t.name, t.shape, t.data));
    const uint64_t n_bytes = t.data.size() * sizeof(float);
    entries.push_back({t.name, "F32", &t.shape, offset, offset + n_bytes});
    offset += n_bytes;
  }
  Sha256 h = StartDigest(entries, meta);
  for (const CheckpointTensorRef& t : tensors)
    h.Update(t.data.data(), t.data.size() * sizeof(float));
  ANVIL_RETURN_IF_ERROR(writer.SetMetadata(kCheckpointSha256Key, h.FinishHex()));
  ANVIL_RETURN_IF_ERROR(writer.WriteFile(path));
  return path;
}

absl::StatusOr<std::string> WriteCheckpoint(const std::string& dir_or_path,
                                            const Checkpoint& ckpt) {
  std::vector<CheckpointTensorRef> refs;
  refs.reserve(ckpt.tensors.size());
  for (const CheckpointTensor& t : ckpt.tensors) {
    refs.push_back({t.name, t.shape, absl::MakeConstSpan(t.data)});
  }
  return WriteCheckpoint(dir_or_path, ckpt.step, refs, ckpt.metadata);
}

absl::StatusOr<int64_t> VerifyCheckpoint(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(auto verified, OpenVerified(path));
  return verified.second;
}

absl::StatusOr<Checkpoint> ReadCheckpoint(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(auto verified, OpenVerified(path));
  const SafetensorsFile& file = *verified.first;
  Checkpoint ckpt;
  ckpt.step = verified.second;
  for (const auto& [k, v] : file.metadata()) {
    if (!absl::StartsWith(k, kReservedPrefix)) ckpt.metadata.emplace(k, v);
  }
  ckpt.tensors.reserve(file.tensors().size());
  for (const safetensors::TensorView& t : file.tensors()) {
    CheckpointTensor& out = ckpt.tensors.emplace_back();
    out.name = t.name;
    out.shape = t.shape;
    out.data.resize(t.bytes.size() / sizeof(float));
    if (!t.bytes.empty()) std::memcpy(out.data.data(), t.bytes.data(), t.bytes.size());
  }
  return ckpt;
}

absl::StatusOr<LatestCheckpointResult> LatestCheckpoint(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> ckpts;
  ANVIL_RETURN_IF_ERROR(ListDir(dir, &ckpts, nullptr));
  LatestCheckpointResult result;
  for (const auto& [name_step, path] : ckpts) {
    absl::StatusOr<int64_t> step = VerifyCheckpoint(path);
    if (step.ok() && *step != name_step) {
      step = absl::DataLossError(absl::StrCat(path, ": the file name says step ", name_step,
                                              " but the checkpoint holds step ", *step));
    }
    if (step.ok()) {
      result.path = path;
      result.step = *step;
      return result;
    }
    absl::StrAppend(&result.warning, result.warning.empty() ? "" : "\n", "skipped ",
                    step.status().message());
  }
  return absl::NotFoundError(absl::StrCat(dir, ": no complete checkpoint",
                                          result.warning.empty() ? "" : ":\n", result.warning));
}

absl::StatusOr<std::vector<std::string>> PruneCheckpoints(const std::string& dir, int keep_last) {
  if (keep_last < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PruneCheckpoints: keep_last is ", keep_last, "; it must be at least 1"));
  }
  std::vector<std::pair<int64_t, std::string>> ckpts;
  std::vector<std::string> doomed;
  ANVIL_RETURN_IF_ERROR(ListDir(dir, &ckpts, &doomed));
  for (size_t i = static_cast<size_t>(keep_last); i < ckpts.size(); ++i) {
    doomed.push_back(ckpts[i].second);
  }
  std::vector<std::string> removed;
  for (const std::string& path : doomed) {
    std::error_code ec;
    if (!fs::remove(path, ec) && ec) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": cannot remove an old checkpoint: ", ec.message()));
    }
    removed.push_back(path);
  }
  return removed;
}

}  // namespace anvil::train
