// The one dispatch point: maps (op, backend) to an implementation. A backend without a kernel
// answers Unimplemented; nothing falls back silently. `#ifdef ANVIL_CUDA` lives only here.
#include "absl/strings/str_cat.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/layer_ops.h"
#include "kernels/matmul.h"
#include "kernels/reference/reference.h"

namespace anvil {
namespace {

absl::Status NoBackend(const char* op, Backend b) {
  return absl::UnimplementedError(
      absl::StrCat(op, ": no kernel for backend ", BackendName(b),
                   b == Backend::kCpu ? " (this CPU lacks AVX2/FMA/F16C)" : ""));
}

absl::Status CheckCpu(const char* op) {
  return cpu::Supported() ? absl::OkStatus() : NoBackend(op, Backend::kCpu);
}

}  // namespace

const char* BackendName(Backend b) {
  switch (b) {
    case Backend::kReference:
      return "reference";
    case Backend::kCpu:
      return "cpu";
    case Backend::kCuda:
      return "cuda";
  }
  return "?";
}

absl::Status MatMul(const ExecContext& ctx, const MatMulArgs& args) {
  switch (ctx.backend) {
    case Backend::kReference:
      return reference::MatMul(args);
    case Backend::kCpu:
      if (auto s = CheckCpu("matmul"); !s.ok()) return s;
      return cpu::MatMul(ctx.pool, args);
    default:
      return NoBackend("matmul", ctx.backend);
  }
}

absl::Status RmsNorm(const ExecContext& ctx, const RmsNormArgs& args) {
  switch (ctx.backend) {
    case Backend::kReference:
      reference::RmsNorm(args);
      return absl::OkStatus();
    case Backend::kCpu:
      if (auto s = CheckCpu("rms_norm"); !s.ok()) return s;
      return cpu::RmsNorm(ctx.pool, args);
    default:
      return NoBackend("rms_norm", ctx.backend);
  }
}

absl::Status Rope(const ExecContext& ctx, const RopeArgs& args) {
  if (args.n_rot % 2 != 0 || args.n_rot > args.d) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: n_rot=", args.n_rot, " must be even and at most D=", args.d));
  }
  switch (ctx.backend) {
    case Backend::kReference:
      reference::Rope(args);
      return absl::OkStatus();
    case Backend::kCpu:
      if (auto s = CheckCpu("rope"); !s.ok()) return s;
      return cpu::Rope(ctx.pool, args);
    default:
      return NoBackend("rope", ctx.backend);
  }
}

absl::Status Attention(const ExecContext& ctx, const AttentionArgs& args) {
  if (args.h_kv <= 0 || args.h % args.h_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat("attention: H=", args.h,
                                              " is not a multiple of Hkv=", args.h_kv));
  }
  switch (ctx.backend) {
    case Backend::kReference:
      reference::Attention(args);
      return absl::OkStatus();
    case Backend::kCpu:
      if (auto s = CheckCpu("attention"); !s.ok()) return s;
      return cpu::Attention(ctx.pool, args);
    default:
      return NoBackend("attention", ctx.backend);
  }
}

absl::Status SwiGlu(const ExecContext& ctx, const SwiGluArgs& args) {
  switch (ctx.backend) {
    case Backend::kReference:
      reference::SwiGlu(args);
      return absl::OkStatus();
    case Backend::kCpu:
      if (auto s = CheckCpu("swiglu"); !s.ok()) return s;
      return cpu::SwiGlu(ctx.pool, args);
    default:
      return NoBackend("swiglu", ctx.backend);
  }
}

absl::Status AddInPlace(const ExecContext& ctx, float* y, const float* x, int64_t n) {
  switch (ctx.backend) {
    case Backend::kReference:
      reference::AddInPlace(y, x, n);
      return absl::OkStatus();
    case Backend::kCpu:
      if (auto s = CheckCpu("add"); !s.ok()) return s;
      return cpu::AddInPlace(ctx.pool, y, x, n);
    default:
      return NoBackend("add", ctx.backend);
  }
}

absl::Status GetRows(const ExecContext& ctx, const GetRowsArgs& args) {
  for (int64_t t = 0; t < args.t; ++t) {
    if (args.ids[t] < 0 || args.ids[t] >= args.v) {
      return absl::InvalidArgumentError(absl::StrCat("get_rows: token id ", args.ids[t],
                                                " at position ", t, " is outside [0, ", args.v,
                                                ")"));
    }
  }
  switch (ctx.backend) {
    case Backend::kReference:
      reference::GetRows(args);
      return absl::OkStatus();
    case Backend::kCpu:
      if (auto s = CheckCpu("get_rows"); !s.ok()) return s;
      return cpu::GetRows(ctx.pool, args);
    default:
      return NoBackend("get_rows", ctx.backend);
  }
}

}  // namespace anvil
