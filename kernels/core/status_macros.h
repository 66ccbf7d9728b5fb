// Status plumbing for the whole project: ANVIL_RETURN_IF_ERROR and ANVIL_ASSIGN_OR_RETURN,
// which our abseil (20220623) lacks. Every library below the transport uses these.
#ifndef ANVIL_KERNELS_CORE_STATUS_MACROS_H_
#define ANVIL_KERNELS_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ANVIL_STATUS_CONCAT_INNER_(a, b) a##b
#define ANVIL_STATUS_CONCAT_(a, b) ANVIL_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function if not OK.
#define ANVIL_RETURN_IF_ERROR(expr)                      \
  do {                                                   \
    ::absl::Status anvil_status_ = (expr);               \
    if (!anvil_status_.ok()) return anvil_status_;       \
  } while (0)

// `lhs` = value of `rexpr` (an absl::StatusOr<T>), or returns its status from the enclosing
// function. `lhs` may be a declaration: ANVIL_ASSIGN_OR_RETURN(auto x, F());
#define ANVIL_ASSIGN_OR_RETURN(lhs, rexpr) \
  ANVIL_ASSIGN_OR_RETURN_IMPL_(ANVIL_STATUS_CONCAT_(anvil_statusor_, __LINE__), lhs, rexpr)

#define ANVIL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // ANVIL_KERNELS_CORE_STATUS_MACROS_H_
