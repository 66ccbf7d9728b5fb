// The small SQLite layer the coordinator's stores share: errors as absl::Status (BUSY/LOCKED →
// Unavailable, CONSTRAINT → AlreadyExists, the rest Internal, each naming the statement),
// one-shot statements, and prepared statements with positional binds and typed columns.
#ifndef ANVIL_COORDINATOR_SQLITE_UTIL_H_
#define ANVIL_COORDINATOR_SQLITE_UTIL_H_

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace anvil::coordinator::sql {

inline absl::Status SqlError(sqlite3* db, absl::string_view what) {
  const int code = sqlite3_errcode(db);
  std::string msg = absl::StrCat("sqlite: ", what, ": ", sqlite3_errmsg(db));
  if (code == SQLITE_CONSTRAINT) return absl::AlreadyExistsError(msg);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return absl::UnavailableError(msg);
  return absl::InternalError(msg);
}

inline absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = absl::StrCat("sqlite: ", err ? err : "error", " in: ", sql);
    sqlite3_free(err);
    return absl::InternalError(msg);
  }
  return absl::OkStatus();
}

// A prepared statement with positional binds (1-based, in call order) and typed columns. A
// statement that failed to prepare steps no rows and reports the error from status() / Run().
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db), sql_(sql) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  Stmt& Bind(int64_t v) {
    sqlite3_bind_int64(stmt_, ++n_, v);
    return *this;
  }
  Stmt& Bind(const std::string& v) {
    sqlite3_bind_text(stmt_, ++n_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindBlob(const std::string& v) {
    sqlite3_bind_blob(stmt_, ++n_, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // True for a row, false when done; an error is kept for status().
  bool Step() {
    if (stmt_ == nullptr) return false;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) status_ = SqlError(db_, sql_);
    return false;
  }
  absl::Status Run() {
    while (Step()) {
    }
    return status();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string(static_cast<const char*>(p), n) : std::string();
  }
  absl::Status status() const { return ok() ? status_ : SqlError(db_, sql_); }

 private:
  sqlite3* db_;
  const char* sql_;
  sqlite3_stmt* stmt_ = nullptr;
  int n_ = 0;
  absl::Status status_;
};

}  // namespace anvil::coordinator::sql

#endif  // ANVIL_COORDINATOR_SQLITE_UTIL_H_
