// ArtifactStore: validation, the `artifacts` table, lineage and listing. The blob files are
// artifact_files.cc's.
#include "coordinator/artifact_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "coordinator/sqlite_util.h"
#include "kernels/core/status_macros.h"

namespace anvil::coordinator {
namespace {

namespace fs = std::filesystem;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS artifacts(
  number INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  fingerprint TEXT NOT NULL UNIQUE,  -- SHA-256 over every field of the info: identical uploads
  kind TEXT NOT NULL,
  job_id TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  info BLOB NOT NULL,                -- serialized anvil.v1.ArtifactInfo
  created_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS artifacts_sha256 ON artifacts(sha256);
)sql";

constexpr size_t kMaxNameBytes = 512;
constexpr size_t kMaxJobIdBytes = 128;
constexpr int kMaxParents = 16;
constexpr int kMaxMetadataEntries = 64;
constexpr size_t kMaxMetadataKeyBytes = 128;
constexpr size_t kMaxMetadataValueBytes = 64 << 10;
constexpr int kDefaultPageSize = 50;
constexpr int kMaxPageSize = 1000;
constexpr size_t kMaxLineage = 256;  // ancestors listed per artifact

using sql::Exec;
using sql::SqlError;
using sql::Stmt;

bool IsLowerHex(const std::string& s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool KnownKind(const std::string& kind) {
  return kind == "model" || kind == "adapter" || kind == "checkpoint" || kind == "eval" ||
         kind == "file";
}

// InvalidArgument for a malformed info; lowercases the digest.
absl::Status ValidateInfo(v1::ArtifactInfo* info) {
  if (info->name().empty() || info->name().size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("name: must be 1 to ", kMaxNameBytes, " bytes, got ", info->name().size()));
  }
  if (!KnownKind(info->kind())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kind: \"", info->kind(), "\" is not one of model, adapter, checkpoint, eval, file"));
  }
  if (info->size_bytes() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("size_bytes: must not be negative, got ", info->size_bytes()));
  }
  info->set_sha256(absl::AsciiStrToLower(info->sha256()));
  if (info->sha256().size() != 64 || !IsLowerHex(info->sha256())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sha256: expected 64 hex digits, got \"", info->sha256(), "\""));
  }
  if (info->parent_ids_size() > kMaxParents) {
    return absl::InvalidArgumentError(absl::StrCat("parent_ids: at most ", kMaxParents, ", got ",
                                                   info->parent_ids_size()));
  }
  std::set<std::string> parents;
  for (const std::string& p : info->parent_ids()) {
    if (!parents.insert(p).second) {
      return absl::InvalidArgumentError(absl::StrCat("parent_ids: ", p, " is listed twice"));
    }
  }
  if (info->job_id().size() > kMaxJobIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat("job_id: longer than ", kMaxJobIdBytes));
  }
  if (info->metadata_size() > kMaxMetadataEntries) {
    return absl::InvalidArgumentError(absl::StrCat("metadata: at most ", kMaxMetadataEntries,
                                                   " entries, got ", info->metadata_size()));
  }
  for (const auto& [key, value] : info->metadata()) {
    if (key.empty() || key.size() > kMaxMetadataKeyBytes || value.size() > kMaxMetadataValueBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metadata[\"", key.substr(0, 64), "\"]: keys are 1 to ", kMaxMetadataKeyBytes,
          " bytes and values at most ", kMaxMetadataValueBytes));
    }
  }
  return absl::OkStatus();
}

// Identical infos (field by field, metadata in key order) have the same fingerprint.
std::string Fingerprint(const v1::ArtifactInfo& info) {
  Sha256 h;
  auto field = [&h](absl::string_view s) {
    h.Update(absl::StrCat(s.size(), ":"));
    h.Update(s.data(), s.size());
  };
  field(info.name());
  field(info.kind());
  field(absl::StrCat(info.size_bytes()));
  field(info.sha256());
  field(absl::StrCat(info.parent_ids_size()));
  for (const std::string& p : info.parent_ids()) field(p);
  field(info.job_id());
  const std::map<std::string, std::string> sorted(info.metadata().begin(), info.metadata().end());
  for (const auto& [k, v] : sorted) {
    field(k);
    field(v);
  }
  return h.FinishHex();
}

}  // namespace

std::string ArtifactIdFromNumber(int64_t number) { return absl::StrFormat("art-%06d", number); }

int64_t ArtifactNumberFromId(absl::string_view id) {
  int64_t n = 0;
  if (id.size() < 5 || id.substr(0, 4) != "art-" || !absl::SimpleAtoi(id.substr(4), &n) || n <= 0) {
    return 0;
  }
  return ArtifactIdFromNumber(n) == id ? n : 0;
}

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(
    const ArtifactStoreOptions& options) {
  if (options.blob_dir.empty()) return absl::InvalidArgumentError("blob dir: a path is required");
  if (options.max_size_bytes <= 0) {
    return absl::InvalidArgumentError("max artifact size: must be positive");
  }
  const std::string tmp = options.blob_dir + "/tmp";
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (!ec) fs::create_directories(options.blob_dir + "/sha256", ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat(options.blob_dir, ": cannot create the blob directory: ", ec.message()));
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(options.db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                      nullptr) != SQLITE_OK) {
    std::string msg = absl::StrCat(options.db_path, ": cannot open database: ",
                                   db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return absl::FailedPreconditionError(msg);
  }
  std::unique_ptr<ArtifactStore> store(new ArtifactStore(options, db));
  sqlite3_busy_timeout(db, 5000);  // the Store's connection may hold the write lock briefly
  ANVIL_RETURN_IF_ERROR(Exec(db, "PRAGMA journal_mode=WAL"));
  ANVIL_RETURN_IF_ERROR(Exec(db, "PRAGMA synchronous=FULL"));
  ANVIL_RETURN_IF_ERROR(Exec(db, kSchema));
  // Uploads that a crash interrupted; no upload of this process has started yet.
  for (const auto& entry : fs::directory_iterator(tmp, ec)) {
    std::error_code rm;
    if (fs::remove_all(entry.path(), rm) > 0 && !rm) ++store->removed_temp_files_;
  }
  return store;
}

ArtifactStore::~ArtifactStore() {
  absl::MutexLock lock(&mu_);
  sqlite3_close(db_);
}

std::string ArtifactStore::BlobPath(const std::string& sha256_hex) const {
  return absl::StrCat(options_.blob_dir, "/sha256/", sha256_hex.substr(0, 2), "/",
                      sha256_hex.substr(std::min<size_t>(2, sha256_hex.size())));
}

absl::StatusOr<std::unique_ptr<ArtifactUpload>> ArtifactStore::BeginUpload(v1::ArtifactInfo info) {
  ANVIL_RETURN_IF_ERROR(ValidateInfo(&info));
  if (info.size_bytes() > options_.max_size_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        info.name(), ": ", info.size_bytes(), " bytes is over this coordinator's artifact cap of ",
        options_.max_size_bytes, " bytes (anvil-coordinator --max-artifact-bytes)"));
  }
  {
    absl::MutexLock lock(&mu_);
    ANVIL_RETURN_IF_ERROR(CheckParentsLocked(info));
  }
  struct statvfs vfs;
  if (statvfs(options_.blob_dir.c_str(), &vfs) == 0) {
    const auto free_bytes = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
    if (info.size_bytes() > free_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(info.name(), ": ", info.size_bytes(), " bytes do not fit in the ",
                       free_bytes, " bytes free under ", options_.blob_dir));
    }
  }
  std::string temp = options_.blob_dir + "/tmp/upload-XXXXXX";
  const int fd = mkostemp(temp.data(), O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat(temp, ": cannot create: ", std::strerror(errno)));
  }
  return std::unique_ptr<ArtifactUpload>(new ArtifactUpload(this, std::move(info), temp, fd));
}

absl::Status ArtifactStore::CheckParentsLocked(const v1::ArtifactInfo& info) {
  for (int i = 0; i < info.parent_ids_size(); ++i) {
    Stmt st(db_, "SELECT 1 FROM artifacts WHERE id = ?");
    st.Bind(info.parent_ids(i));
    if (!st.Step()) {
      ANVIL_RETURN_IF_ERROR(st.status());
      return absl::NotFoundError(
          absl::StrCat("parent_ids[", i, "]: no artifact ", info.parent_ids(i)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Artifact> ArtifactStore::Insert(const v1::ArtifactInfo& info) {
  const std::string fingerprint = Fingerprint(info);
  absl::MutexLock lock(&mu_);
  ANVIL_RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  auto insert = [&]() -> absl::StatusOr<std::string> {
    Stmt same(db_, "SELECT id FROM artifacts WHERE fingerprint = ?");
    same.Bind(fingerprint);
    if (same.Step()) return same.Text(0);
    ANVIL_RETURN_IF_ERROR(same.status());
    ANVIL_RETURN_IF_ERROR(CheckParentsLocked(info));
    Stmt last(db_, "SELECT COALESCE(MAX(number), 0) FROM artifacts");
    if (!last.Step()) return SqlError(db_, "last artifact number");
    const int64_t number = last.Int(0) + 1;
    const std::string id = ArtifactIdFromNumber(number);
    Stmt st(db_,
            "INSERT INTO artifacts(number, id, fingerprint, kind, job_id, sha256, info, "
            "created_ms) VALUES(?,?,?,?,?,?,?,?)");
    st.Bind(number).Bind(id).Bind(fingerprint).Bind(info.kind()).Bind(info.job_id());
    st.Bind(info.sha256()).BindBlob(info.SerializeAsString()).Bind(absl::ToUnixMillis(absl::Now()));
    ANVIL_RETURN_IF_ERROR(st.Run());
    return id;
  };
  absl::StatusOr<std::string> id = insert();
  absl::Status s = id.status();
  if (s.ok()) s = Exec(db_, "COMMIT");
  if (!s.ok()) {
    Exec(db_, "ROLLBACK").IgnoreError();
    return s;
  }
  ANVIL_ASSIGN_OR_RETURN(v1::Artifact a, LoadLocked(*id));
  ANVIL_RETURN_IF_ERROR(AddLineageLocked(&a));
  return a;
}

absl::StatusOr<v1::Artifact> ArtifactStore::LoadLocked(const std::string& artifact_id) {
  Stmt st(db_, "SELECT info, created_ms FROM artifacts WHERE id = ?");
  st.Bind(artifact_id);
  if (!st.Step()) {
    ANVIL_RETURN_IF_ERROR(st.status());
    return absl::NotFoundError(absl::StrCat("no artifact ", artifact_id));
  }
  v1::Artifact a;
  a.set_artifact_id(artifact_id);
  if (!a.mutable_info()->ParseFromString(st.Text(0))) {
    return absl::DataLossError(absl::StrCat("artifact ", artifact_id, ": cannot parse its row"));
  }
  a.set_created_unix_ms(st.Int(1));
  return a;
}

absl::Status ArtifactStore::AddLineageLocked(v1::Artifact* artifact) {
  // Every ancestor once, breadth first, then the longest parent chain to each: a parent always
  // has a smaller number than its child (it must exist first), so visiting by number downwards
  // is a topological order.
  std::map<int64_t, v1::Artifact, std::greater<>> ancestors;
  std::deque<std::string> todo(artifact->info().parent_ids().begin(),
                               artifact->info().parent_ids().end());
  std::set<std::string> seen;
  while (!todo.empty() && ancestors.size() < kMaxLineage) {
    const std::string id = todo.front();
    todo.pop_front();
    if (!seen.insert(id).second) continue;
    ANVIL_ASSIGN_OR_RETURN(v1::Artifact a, LoadLocked(id));
    for (const std::string& p : a.info().parent_ids()) todo.push_back(p);
    ancestors.emplace(ArtifactNumberFromId(id), std::move(a));
  }
  std::map<std::string, int> depth;
  for (const std::string& p : artifact->info().parent_ids()) depth[p] = 1;
  for (const auto& [number, a] : ancestors) {
    const int d = depth[a.artifact_id()];
    for (const std::string& p : a.info().parent_ids()) depth[p] = std::max(depth[p], d + 1);
  }
  std::vector<const v1::Artifact*> order;
  for (const auto& [number, a] : ancestors) order.push_back(&a);
  std::stable_sort(order.begin(), order.end(), [&](const v1::Artifact* x, const v1::Artifact* y) {
    return depth[x->artifact_id()] > depth[y->artifact_id()];
  });
  for (const v1::Artifact* a : order) {
    v1::LineageEntry* e = artifact->add_lineage();
    e->set_artifact_id(a->artifact_id());
    e->set_name(a->info().name());
    e->set_kind(a->info().kind());
    e->set_depth(depth[a->artifact_id()]);
    *e->mutable_parent_ids() = a->info().parent_ids();
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Artifact> ArtifactStore::Get(const std::string& artifact_id) {
  absl::MutexLock lock(&mu_);
  ANVIL_ASSIGN_OR_RETURN(v1::Artifact a, LoadLocked(artifact_id));
  ANVIL_RETURN_IF_ERROR(AddLineageLocked(&a));
  return a;
}

absl::StatusOr<ArtifactPage> ArtifactStore::List(const ArtifactFilter& filter) {
  if (filter.page_size < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must not be negative, got ", filter.page_size));
  }
  const int page_size = std::min(filter.page_size == 0 ? kDefaultPageSize : filter.page_size,
                                 kMaxPageSize);
  int64_t before = INT64_MAX;
  if (!filter.page_token.empty() && (!absl::SimpleAtoi(filter.page_token, &before) || before <= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: \"", filter.page_token, "\" is not one this server gave out"));
  }
  const std::string sha = absl::AsciiStrToLower(filter.sha256);
  absl::MutexLock lock(&mu_);
  Stmt st(db_,
          "SELECT number, id FROM artifacts WHERE (? = '' OR kind = ?) AND (? = '' OR job_id = ?) "
          "AND (? = '' OR sha256 = ?) AND number < ? ORDER BY number DESC LIMIT ?");
  st.Bind(filter.kind).Bind(filter.kind).Bind(filter.job_id).Bind(filter.job_id);
  st.Bind(sha).Bind(sha).Bind(before).Bind(static_cast<int64_t>(page_size) + 1);
  std::vector<std::pair<int64_t, std::string>> rows;
  while (st.Step()) rows.emplace_back(st.Int(0), st.Text(1));
  ANVIL_RETURN_IF_ERROR(st.status());
  ArtifactPage page;
  if (rows.size() > static_cast<size_t>(page_size)) {
    rows.resize(page_size);
    page.next_page_token = absl::StrCat(rows.back().first);
  }
  for (const auto& [number, id] : rows) {
    ANVIL_ASSIGN_OR_RETURN(v1::Artifact a, LoadLocked(id));
    ANVIL_RETURN_IF_ERROR(AddLineageLocked(&a));
    page.artifacts.push_back(std::move(a));
  }
  return page;
}

absl::StatusOr<std::unique_ptr<ArtifactReader>> ArtifactStore::OpenForRead(
    const std::string& artifact_id, int64_t offset) {
  ANVIL_ASSIGN_OR_RETURN(v1::Artifact a, Get(artifact_id));
  if (offset < 0 || offset > a.info().size_bytes()) {
    return absl::OutOfRangeError(absl::StrCat("offset: ", offset, " is outside ", artifact_id,
                                              " (", a.info().size_bytes(), " bytes)"));
  }
  const std::string path = BlobPath(a.info().sha256());
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::DataLossError(absl::StrCat(artifact_id, ": its blob ", path,
                                            " cannot be opened: ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size != a.info().size_bytes()) {
    close(fd);
    return absl::DataLossError(absl::StrCat(artifact_id, ": its blob ", path, " is not ",
                                            a.info().size_bytes(), " bytes long"));
  }
  return std::unique_ptr<ArtifactReader>(new ArtifactReader(std::move(a), fd, offset));
}

}  // namespace anvil::coordinator
