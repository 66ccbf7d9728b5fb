// Helpers shared by the CUDA host glue (ops.cc, ops_backward.cc): argument checks that answer
// InvalidArgument naming the field, the context's stream, and the device word through which a
// kernel reports the first bad token id or target (set, then read back after the kernel).
// Host code only (abseil); the .cu files never include this.
#ifndef ANVIL_KERNELS_CUDA_HOST_CHECKS_H_
#define ANVIL_KERNELS_CUDA_HOST_CHECKS_H_

#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/context.h"

namespace anvil::cuda {

inline constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
inline constexpr unsigned kNoBadIndex = 0xffffffffu;

inline cudaStream_t Stream(Context& ctx) { return static_cast<cudaStream_t>(ctx.stream()); }

inline absl::Status Launch(cudaError_t err, const char* op) { return CudaStatus(err, op); }

// InvalidArgument unless every named pointer is set.
inline absl::Status NeedPointers(const char* op,
                                 std::initializer_list<std::pair<const char*, const void*>> ptrs) {
  for (const auto& [name, p] : ptrs) {
    if (p == nullptr) return absl::InvalidArgumentError(absl::StrCat(op, ": ", name, " is null"));
  }
  return absl::OkStatus();
}

// InvalidArgument unless lo <= value <= hi.
inline absl::Status NeedRange(const char* op, const char* name, int64_t value, int64_t lo,
                              int64_t hi) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": ", name, "=", value, " is outside [", lo, ", ", hi, "]"));
  }
  return absl::OkStatus();
}

// A device word set to kNoBadIndex, in the context's workspace, for a kernel to lower.
inline absl::StatusOr<unsigned*> BadIndexWord(Context& ctx, const char* op) {
  ANVIL_ASSIGN_OR_RETURN(void* ws, ctx.Workspace(sizeof(unsigned)));
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaMemsetAsync(ws, 0xff, sizeof(unsigned), Stream(ctx)), op));
  return static_cast<unsigned*>(ws);
}

// Waits for the stream and returns the word a kernel lowered, or kNoBadIndex.
inline absl::StatusOr<unsigned> ReadBadIndex(Context& ctx, const unsigned* word, const char* op) {
  unsigned host = kNoBadIndex;
  ANVIL_RETURN_IF_ERROR(CudaStatus(
      cudaMemcpyAsync(&host, word, sizeof(host), cudaMemcpyDeviceToHost, Stream(ctx)), op));
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(Stream(ctx)), op));
  return host;
}

// One int32 of device memory (a token id or target at a reported position).
inline absl::StatusOr<int32_t> ReadDeviceInt(Context& ctx, const int32_t* p, const char* op) {
  int32_t host = 0;
  ANVIL_RETURN_IF_ERROR(
      CudaStatus(cudaMemcpyAsync(&host, p, sizeof(host), cudaMemcpyDeviceToHost, Stream(ctx)), op));
  ANVIL_RETURN_IF_ERROR(CudaStatus(cudaStreamSynchronize(Stream(ctx)), op));
  return host;
}

}  // namespace anvil::cuda

#endif  // ANVIL_KERNELS_CUDA_HOST_CHECKS_H_
