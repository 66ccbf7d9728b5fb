// Host glue for the CUDA backward ops (cuda.h): validates each argument struct (InvalidArgument
// naming the field), maps it to the plain launcher of its <op>_backward.cu file
// (launch_backward.h), and turns the cudaError_t into a Status. Ops enqueue on ctx.stream() and
// return without waiting, except EmbeddingBackward and CrossEntropyBackward, which read back one
// device word to report a bad token id or target. EmbeddingBackward checks the ids before it
// adds anything; CrossEntropyBackward (which overwrites) reports after its kernel.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/host_checks.h"
#include "kernels/cuda/launch_backward.h"
#include "kernels/cuda/launch_ops.h"

namespace anvil::cuda {

absl::Status RmsNormBackward(Context& ctx, const RmsNormBackwardArgs& a) {
  constexpr const char* kOp = "rms_norm_backward";
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "C", a.c, 1, kIntMax));
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers(kOp, {{"x", a.x}, {"w", a.w}, {"dy", a.dy}, {"dx", a.dx}}));
  float* row_scale = nullptr;
  if (a.dw != nullptr) {
    ANVIL_ASSIGN_OR_RETURN(void* ws, ctx.Workspace(static_cast<size_t>(a.t) * sizeof(float)));
    row_scale = static_cast<float*>(ws);
  }
  return Launch(
      LaunchRmsNormBackward(a.x, a.w, a.dy, a.dx, a.dw, a.t, a.c, a.eps, row_scale, Stream(ctx)),
      kOp);
}

absl::Status AttentionBackward(Context& ctx, const AttentionBackwardArgs& a) {
  constexpr const char* kOp = "attention_backward";
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "Hkv", a.h_kv, 1, 65535));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "H", a.h, 1, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "D", a.d, 1, kAttentionMaxHeadDim));
  if (a.h % a.h_kv != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": H=", a.h, " is not a multiple of Hkv=", a.h_kv));
  }
  if (a.t * a.h > kIntMax) {
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": T=", a.t, " x H=", a.h, " query rows overflow"));
  }
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers(kOp, {{"q", a.q},
                                           {"k", a.k},
                                           {"v", a.v},
                                           {"out", a.out},
                                           {"dout", a.dout},
                                           {"dq", a.dq},
                                           {"dk", a.dk},
                                           {"dv", a.dv}}));
  // stats: [2][T*H] floats, each query row's log-sum-exp and sum(dout * out).
  ANVIL_ASSIGN_OR_RETURN(void* ws,
                         ctx.Workspace(static_cast<size_t>(2 * a.t * a.h) * sizeof(float)));
  return Launch(LaunchAttentionBackward(a.q, a.k, a.v, a.out, a.dout, a.dq, a.dk, a.dv, a.t, a.h,
                                        a.h_kv, a.d, a.scale, static_cast<float*>(ws), Stream(ctx)),
                kOp);
}

absl::Status SwiGluBackward(Context& ctx, const SwiGluBackwardArgs& a) {
  constexpr const char* kOp = "swiglu_backward";
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "n", a.n, 0, std::numeric_limits<int64_t>::max()));
  if (a.n == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers(
      kOp, {{"gate", a.gate}, {"up", a.up}, {"dout", a.dout}, {"dgate", a.dgate}, {"dup", a.dup}}));
  return Launch(LaunchSwiGluBackward(a.gate, a.up, a.dout, a.dgate, a.dup, a.n, Stream(ctx)), kOp);
}

absl::Status EmbeddingBackward(Context& ctx, const EmbeddingBackwardArgs& a) {
  constexpr const char* kOp = "embedding_backward";
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "V", a.v, 1, std::numeric_limits<int64_t>::max()));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "C", a.c, 1, kIntMax));
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers(kOp, {{"ids", a.ids}, {"dy", a.dy}, {"dtable", a.dtable}}));
  ANVIL_ASSIGN_OR_RETURN(unsigned* bad, BadIndexWord(ctx, kOp));
  ANVIL_RETURN_IF_ERROR(Launch(LaunchEmbeddingIdsCheck(a.ids, a.t, a.v, bad, Stream(ctx)), kOp));
  ANVIL_ASSIGN_OR_RETURN(const unsigned pos, ReadBadIndex(ctx, bad, kOp));
  if (pos != kNoBadIndex) {
    ANVIL_ASSIGN_OR_RETURN(const int32_t id, ReadDeviceInt(ctx, a.ids + pos, kOp));
    return absl::InvalidArgumentError(
        absl::StrCat(kOp, ": token id ", id, " at position ", pos, " is outside [0, ", a.v, ")"));
  }
  return Launch(LaunchEmbeddingBackward(a.ids, a.dy, a.dtable, a.t, a.c, Stream(ctx)), kOp);
}

absl::Status CrossEntropyBackward(Context& ctx, const CrossEntropyBackwardArgs& a) {
  constexpr const char* kOp = "cross_entropy_backward";
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "V", a.v, 1, kIntMax));
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers(kOp, {{"logits", a.logits},
                                           {"lse", a.lse},
                                           {"targets", a.targets},
                                           {"dloss", a.dloss},
                                           {"dlogits", a.dlogits}}));
  ANVIL_ASSIGN_OR_RETURN(unsigned* bad, BadIndexWord(ctx, kOp));
  ANVIL_RETURN_IF_ERROR(Launch(LaunchCrossEntropyBackward(a.logits, a.lse, a.targets, a.dloss,
                                                          a.dlogits, a.t, a.v, bad, Stream(ctx)),
                               kOp));
  ANVIL_ASSIGN_OR_RETURN(const unsigned row, ReadBadIndex(ctx, bad, kOp));
  if (row == kNoBadIndex) return absl::OkStatus();
  ANVIL_ASSIGN_OR_RETURN(const int32_t target, ReadDeviceInt(ctx, a.targets + row, kOp));
  return absl::InvalidArgumentError(
      absl::StrCat(kOp, ": target ", target, " at row ", row, " is not below V=", a.v));
}

}  // namespace anvil::cuda
