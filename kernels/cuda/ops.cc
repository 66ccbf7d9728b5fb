// Host glue for the CUDA layer and training ops (cuda.h): validates each argument struct
// (InvalidArgument naming the field), maps it to the plain launcher of its <op>.cu file
// (launch_ops.h), and turns the cudaError_t into a Status. Ops enqueue on ctx.stream() and
// return without waiting, except GetRows and CrossEntropy, which read back one device word to
// report a bad token id or target (their inputs live on the device, so dispatch cannot check).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/host_checks.h"
#include "kernels/cuda/launch_ops.h"
#include "kernels/dtype.h"
#include "kernels/reference/adamw_update.h"

namespace anvil::cuda {
namespace {

// Rope keeps the cos/sin table of one token in (default, 48 KB) shared memory.
constexpr int64_t kRopeMaxRot = 8192;

}  // namespace

absl::Status RmsNorm(Context& ctx, const RmsNormArgs& a) {
  ANVIL_RETURN_IF_ERROR(NeedRange("rms_norm", "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("rms_norm", "C", a.c, 1, kIntMax));
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers("rms_norm", {{"x", a.x}, {"w", a.w}, {"y", a.y}}));
  return Launch(LaunchRmsNorm(a.x, a.w, a.y, a.t, a.c, a.eps, Stream(ctx)), "rms_norm");
}

absl::Status Rope(Context& ctx, const RopeArgs& a) {
  ANVIL_RETURN_IF_ERROR(NeedRange("rope", "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("rope", "H", a.h, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("rope", "D", a.d, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("rope", "n_rot", a.n_rot, 0, std::min(a.d, kRopeMaxRot)));
  if (a.n_rot % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("rope: n_rot=", a.n_rot, " is odd"));
  }
  if (a.h * (a.n_rot / 2) > kIntMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: H=", a.h, " x n_rot/2=", a.n_rot / 2, " pairs per token overflow"));
  }
  if (a.t == 0 || a.h == 0 || a.n_rot == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers("rope", {{"x", a.x}, {"pos", a.pos}}));
  // The reference's theta step (reference::RopeCosSin), computed here by the same host powf.
  const float theta_scale = std::pow(a.freq_base, -2.0f / static_cast<float>(a.n_rot));
  // inverse (the backward pass) rotates by -theta: the kernel negates its sines (exactly).
  return Launch(LaunchRope(a.x, a.pos, a.t, a.h, a.d, a.n_rot, theta_scale, a.neox,
                           a.inverse ? -1.0f : 1.0f, Stream(ctx)),
                "rope");
}

absl::Status Attention(Context& ctx, const AttentionArgs& a) {
  ANVIL_RETURN_IF_ERROR(NeedRange("attention", "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("attention", "past", a.past, 0, kIntMax - a.t));
  ANVIL_RETURN_IF_ERROR(NeedRange("attention", "Hkv", a.h_kv, 1, 65535));
  ANVIL_RETURN_IF_ERROR(NeedRange("attention", "H", a.h, 1, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("attention", "D", a.d, 1, kAttentionMaxHeadDim));
  if (a.h % a.h_kv != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: H=", a.h, " is not a multiple of Hkv=", a.h_kv));
  }
  if (a.t * (a.h / a.h_kv) > kIntMax || a.t * a.h > kIntMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: T=", a.t, " x H=", a.h, " query rows overflow"));
  }
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(
      NeedPointers("attention", {{"q", a.q}, {"k", a.k}, {"v", a.v}, {"out", a.out}}));
  const AttentionPlan plan = PlanAttention(a.t, a.past, a.h, a.h_kv, a.d, ctx.sm_count());
  float* partials = nullptr;
  if (plan.partial_floats > 0) {
    ANVIL_ASSIGN_OR_RETURN(void* ws,
                           ctx.Workspace(static_cast<size_t>(plan.partial_floats) * sizeof(float)));
    partials = static_cast<float*>(ws);
  }
  return Launch(LaunchAttention(a.q, a.k, a.v, a.out, a.t, a.past, a.h, a.h_kv, a.d, a.scale,
                                plan, partials, Stream(ctx)),
                "attention");
}

absl::Status SwiGlu(Context& ctx, const SwiGluArgs& a) {
  ANVIL_RETURN_IF_ERROR(NeedRange("swiglu", "n", a.n, 0, std::numeric_limits<int64_t>::max()));
  if (a.n == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers("swiglu", {{"gate", a.gate}, {"up", a.up}, {"out", a.out}}));
  return Launch(LaunchSwiGlu(a.gate, a.up, a.out, a.n, Stream(ctx)), "swiglu");
}

absl::Status AddInPlace(Context& ctx, float* y, const float* x, int64_t n) {
  ANVIL_RETURN_IF_ERROR(NeedRange("add", "n", n, 0, std::numeric_limits<int64_t>::max()));
  if (n == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers("add", {{"y", y}, {"x", x}}));
  return Launch(LaunchAddInPlace(y, x, n, Stream(ctx)), "add");
}

absl::Status GetRows(Context& ctx, const GetRowsArgs& a) {
  constexpr const char* kOp = "get_rows";
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "V", a.v, 1, std::numeric_limits<int64_t>::max()));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "C", a.c, 1, kIntMax));
  ANVIL_ASSIGN_OR_RETURN(const int64_t row_bytes, RowBytes(a.type, a.c));
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers(kOp, {{"table", a.table}, {"ids", a.ids}, {"out", a.out}}));
  // F32 rows are read as floats, every other type as 16-bit words (fp16 scales included).
  const uintptr_t align = a.type == DType::kF32 ? 4 : 2;
  if (reinterpret_cast<uintptr_t>(a.table) % align != 0) {
    return absl::InvalidArgumentError(absl::StrCat(kOp, ": ", DTypeName(a.type),
                                                   " table is not ", align, "-byte aligned"));
  }
  ANVIL_ASSIGN_OR_RETURN(unsigned* bad, BadIndexWord(ctx, kOp));
  ANVIL_RETURN_IF_ERROR(Launch(LaunchGetRows(static_cast<int>(a.type), a.table, row_bytes, a.ids,
                                             a.out, a.t, a.v, a.c, bad, Stream(ctx)),
                               kOp));
  ANVIL_ASSIGN_OR_RETURN(const unsigned pos, ReadBadIndex(ctx, bad, kOp));
  if (pos == kNoBadIndex) return absl::OkStatus();
  ANVIL_ASSIGN_OR_RETURN(const int32_t id, ReadDeviceInt(ctx, a.ids + pos, kOp));
  return absl::InvalidArgumentError(absl::StrCat(kOp, ": token id ", id, " at position ", pos,
                                                 " is outside [0, ", a.v, ")"));
}

absl::Status Softmax(Context& ctx, const SoftmaxArgs& a) {
  ANVIL_RETURN_IF_ERROR(NeedRange("softmax", "rows", a.rows, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("softmax", "cols", a.cols, 1, kIntMax));
  if (a.rows == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers("softmax", {{"x", a.x}, {"y", a.y}}));
  return Launch(LaunchSoftmax(a.x, a.y, a.rows, a.cols, a.scale, Stream(ctx)), "softmax");
}

absl::Status LogSumExp(Context& ctx, const LogSumExpArgs& a) {
  ANVIL_RETURN_IF_ERROR(NeedRange("logsumexp", "rows", a.rows, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange("logsumexp", "cols", a.cols, 1, kIntMax));
  if (a.rows == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(NeedPointers("logsumexp", {{"x", a.x}, {"out", a.out}}));
  return Launch(LaunchLogSumExp(a.x, a.out, a.rows, a.cols, Stream(ctx)), "logsumexp");
}

absl::Status CrossEntropy(Context& ctx, const CrossEntropyArgs& a) {
  constexpr const char* kOp = "cross_entropy";
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "T", a.t, 0, kIntMax));
  ANVIL_RETURN_IF_ERROR(NeedRange(kOp, "V", a.v, 1, kIntMax));
  if (a.t == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(
      NeedPointers(kOp, {{"logits", a.logits}, {"targets", a.targets}, {"loss", a.loss}}));
  ANVIL_ASSIGN_OR_RETURN(unsigned* bad, BadIndexWord(ctx, kOp));
  ANVIL_RETURN_IF_ERROR(Launch(
      LaunchCrossEntropy(a.logits, a.targets, a.loss, a.lse, a.t, a.v, bad, Stream(ctx)), kOp));
  ANVIL_ASSIGN_OR_RETURN(const unsigned row, ReadBadIndex(ctx, bad, kOp));
  if (row == kNoBadIndex) return absl::OkStatus();
  ANVIL_ASSIGN_OR_RETURN(const int32_t target, ReadDeviceInt(ctx, a.targets + row, kOp));
  return absl::InvalidArgumentError(absl::StrCat(kOp, ": target ", target, " at row ", row,
                                                 " is not below V=", a.v));
}

absl::Status AdamW(Context& ctx, const AdamWArgs& a) {
  ANVIL_RETURN_IF_ERROR(NeedRange("adamw", "n", a.n, 0, std::numeric_limits<int64_t>::max()));
  ANVIL_RETURN_IF_ERROR(NeedRange("adamw", "step", a.step, 1,
                                  std::numeric_limits<int64_t>::max()));
  if (a.n == 0) return absl::OkStatus();
  ANVIL_RETURN_IF_ERROR(
      NeedPointers("adamw", {{"param", a.param}, {"grad", a.grad}, {"m", a.m}, {"v", a.v}}));
  // The reference's own factor derivation, so that the kernel sees the same float scalars.
  const reference::AdamWFactors rf = reference::MakeAdamWFactors(a);
  AdamWStepFactors f;
  f.decay = rf.decay;
  f.lerp_weight = rf.lerp_weight;
  f.lerp_small = rf.lerp_small;
  f.beta2 = rf.beta2;
  f.one_minus_beta2 = rf.one_minus_beta2;
  f.bc2_sqrt = rf.bc2_sqrt;
  f.eps = rf.eps;
  f.neg_step_size = rf.neg_step_size;
  return Launch(LaunchAdamW(a.param, a.grad, a.m, a.v, a.n, f, Stream(ctx)), "adamw");
}

}  // namespace anvil::cuda
