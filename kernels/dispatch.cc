// The one dispatch point: maps (op, backend) to an implementation. A backend without a kernel
// answers Unimplemented; nothing falls back silently. `#ifdef ANVIL_CUDA` lives only here.
// Checks that read tensor contents (token ids, targets) run here for the host backends only:
// with kCuda those pointers are device memory and the CUDA kernels check on the device.
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "kernels/adamw.h"
#include "kernels/backend.h"
#include "kernels/core/status_macros.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"
#include "kernels/layer_ops.h"
#include "kernels/layer_ops_backward.h"
#include "kernels/matmul.h"
#include "kernels/reference/reference.h"
#include "kernels/softmax.h"
#ifdef ANVIL_CUDA
#include "kernels/cuda/cuda.h"
#endif

namespace anvil {
namespace {

absl::Status NoBackend(const char* op, Backend b, const char* why = "") {
  return absl::UnimplementedError(absl::StrCat(op, ": no kernel for backend ", BackendName(b), why));
}

// Calls fn and returns its status, or OK when fn returns void.
template <typename Fn>
absl::Status Call(Fn&& fn) {
  if constexpr (std::is_void_v<decltype(fn())>) {
    fn();
    return absl::OkStatus();
  } else {
    return fn();
  }
}

// Routes one op. `ref()` and `cpu(pool)` run on the host; `gpu(cuda::Context&)` only in CUDA
// builds with a context.
template <typename Ref, typename Cpu, typename Gpu>
absl::Status Route(const char* op, const ExecContext& ctx, Ref&& ref, Cpu&& cpu_fn,
                   [[maybe_unused]] Gpu&& gpu) {
  switch (ctx.backend) {
    case Backend::kReference:
      return Call(ref);
    case Backend::kCpu:
      if (!cpu::Supported()) return NoBackend(op, ctx.backend, " (this CPU lacks AVX2/FMA/F16C)");
      return cpu_fn(ctx.pool);
    case Backend::kCuda:
#ifdef ANVIL_CUDA
      if (ctx.cuda == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(op, ": backend cuda needs ExecContext::cuda (a cuda::Context)"));
      }
      return gpu(*ctx.cuda);
#else
      return NoBackend(op, ctx.backend, " (built without ANVIL_CUDA)");
#endif
  }
  return NoBackend(op, ctx.backend);
}

// The CUDA arm of Route: a lambda in CUDA builds, nothing otherwise (so that non-CUDA builds
// never name cuda::).
#ifdef ANVIL_CUDA
#define ANVIL_ON_GPU(call) [&](cuda::Context& gpu) { return cuda::call; }
#else
#define ANVIL_ON_GPU(call) nullptr
#endif

bool OnHost(const ExecContext& ctx) { return ctx.backend != Backend::kCuda; }

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

const char* MatMulNumericsName(MatMulNumerics n) {
  return n == MatMulNumerics::kBlockSum ? "blocksum" : "llamacpp";
}

absl::Status MatMul(const ExecContext& ctx, const MatMulArgs& args) {
  return Route(
      "matmul", ctx, [&] { return reference::MatMul(args, ctx.matmul); },
      [&](ThreadPool* pool) { return cpu::MatMul(pool, args, ctx.matmul); },
      ANVIL_ON_GPU(MatMul(gpu, args)));
}

absl::Status MatMulShared(const ExecContext& ctx, absl::Span<const MatMulArgs> calls) {
  for (const MatMulArgs& c : calls) {
    if (c.x != calls[0].x || c.m != calls[0].m || c.k != calls[0].k ||
        c.w_type != calls[0].w_type) {
      return absl::InvalidArgumentError(
          "matmul: shared-activation calls must have the same x, M, K and weight type");
    }
  }
  // One pass on the CPU; elsewhere (and on a CPU without the kernels: its error) one call each.
  if (ctx.backend == Backend::kCpu && cpu::Supported()) {
    return cpu::MatMulShared(ctx.pool, calls, ctx.matmul);
  }
  for (const MatMulArgs& c : calls) ANVIL_RETURN_IF_ERROR(MatMul(ctx, c));
  return absl::OkStatus();
}

absl::Status Gemm(const ExecContext& ctx, const GemmArgs& a) {
  if (a.m < 0 || a.n < 0 || a.k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("gemm: negative shape M=", a.m, " N=", a.n, " K=", a.k));
  }
  const int64_t a_cols = a.trans_a ? a.m : a.k, b_cols = a.trans_b ? a.k : a.n;
  if (a.lda < a_cols || a.ldb < b_cols || a.ldc < a.n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "gemm: leading dimensions too small: lda=", a.lda, " (need ", a_cols, "), ldb=", a.ldb,
        " (need ", b_cols, "), ldc=", a.ldc, " (need ", a.n, ")"));
  }
  if (a.m > 0 && a.n > 0 && (a.c == nullptr || (a.k > 0 && (a.a == nullptr || a.b == nullptr)))) {
    return absl::InvalidArgumentError("gemm: null matrix pointer");
  }
  return Route(
      "gemm", ctx, [&] { reference::Gemm(a); },
      [&](ThreadPool* pool) { return cpu::Gemm(pool, a); },
      ANVIL_ON_GPU(Gemm(gpu, a)));
}

std::string GemmEngine(const ExecContext& ctx) {
  switch (ctx.backend) {
    case Backend::kReference:
      return "reference";
    case Backend::kCpu:
      return cpu::GemmEngineName();
    case Backend::kCuda:
      return "cuBLAS fp32";
  }
  return "none";
}

absl::Status RmsNorm(const ExecContext& ctx, const RmsNormArgs& args) {
  return Route(
      "rms_norm", ctx, [&] { reference::RmsNorm(args); },
      [&](ThreadPool* pool) { return cpu::RmsNorm(pool, args); },
      ANVIL_ON_GPU(RmsNorm(gpu, args)));
}

absl::Status Rope(const ExecContext& ctx, const RopeArgs& args) {
  if (args.n_rot % 2 != 0 || args.n_rot > args.d) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope: n_rot=", args.n_rot, " must be even and at most D=", args.d));
  }
  return Route(
      "rope", ctx, [&] { reference::Rope(args); },
      [&](ThreadPool* pool) { return cpu::Rope(pool, args); },
      ANVIL_ON_GPU(Rope(gpu, args)));
}

absl::Status Attention(const ExecContext& ctx, const AttentionArgs& args) {
  if (args.h_kv <= 0 || args.h % args.h_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat("attention: H=", args.h,
                                                   " is not a multiple of Hkv=", args.h_kv));
  }
  if ((args.k_blocks == nullptr) != (args.v_blocks == nullptr) ||
      (args.k_blocks != nullptr && args.block_rows <= 0)) {
    return absl::InvalidArgumentError(
        "attention: paged K/V needs both k_blocks and v_blocks and block_rows > 0");
  }
  const bool half = args.k_blocks_f16 != nullptr || args.v_blocks_f16 != nullptr;
  if (half && (args.k_blocks_f16 == nullptr || args.v_blocks_f16 == nullptr ||
               args.k_blocks != nullptr || !args.blocks_transposed || args.block_rows <= 0)) {
    return absl::InvalidArgumentError(
        "attention: F16 blocks need both k_blocks_f16 and v_blocks_f16, no k_blocks, "
        "blocks_transposed and block_rows > 0");
  }
  if (args.blocks_transposed && args.k_blocks == nullptr && !half) {
    return absl::InvalidArgumentError("attention: blocks_transposed without k_blocks/v_blocks");
  }
  if ((args.k_blocks != nullptr || half) && !OnHost(ctx)) {
    return absl::UnimplementedError("attention: paged K/V is implemented on the host only");
  }
  return Route(
      "attention", ctx, [&] { reference::Attention(args); },
      [&](ThreadPool* pool) { return cpu::Attention(pool, args); },
      ANVIL_ON_GPU(Attention(gpu, args)));
}

bool TransposedKvBlocksAreFast(const ExecContext& ctx, int64_t d, int64_t block_rows) {
  return ctx.backend == Backend::kCpu && cpu::Supported() &&
         cpu::AttentionReadsTransposedBlocks(d, block_rows);
}

absl::Status SwiGlu(const ExecContext& ctx, const SwiGluArgs& args) {
  return Route(
      "swiglu", ctx, [&] { reference::SwiGlu(args); },
      [&](ThreadPool* pool) { return cpu::SwiGlu(pool, args); },
      ANVIL_ON_GPU(SwiGlu(gpu, args)));
}

absl::Status AddInPlace(const ExecContext& ctx, float* y, const float* x, int64_t n) {
  return Route(
      "add", ctx, [&] { reference::AddInPlace(y, x, n); },
      [&](ThreadPool* pool) { return cpu::AddInPlace(pool, y, x, n); },
      ANVIL_ON_GPU(AddInPlace(gpu, y, x, n)));
}

absl::Status GetRows(const ExecContext& ctx, const GetRowsArgs& args) {
  for (int64_t t = 0; OnHost(ctx) && t < args.t; ++t) {
    if (args.ids[t] < 0 || args.ids[t] >= args.v) {
      return absl::InvalidArgumentError(absl::StrCat("get_rows: token id ", args.ids[t],
                                                     " at position ", t, " is outside [0, ",
                                                     args.v, ")"));
    }
  }
  return Route(
      "get_rows", ctx, [&] { reference::GetRows(args); },
      [&](ThreadPool* pool) { return cpu::GetRows(pool, args); },
      ANVIL_ON_GPU(GetRows(gpu, args)));
}

absl::Status Softmax(const ExecContext& ctx, const SoftmaxArgs& args) {
  if (args.rows < 0 || args.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("softmax: bad shape rows=", args.rows, " cols=", args.cols));
  }
  return Route(
      "softmax", ctx, [&] { reference::Softmax(args); },
      [&](ThreadPool* pool) { return cpu::Softmax(pool, args); },
      ANVIL_ON_GPU(Softmax(gpu, args)));
}

absl::Status LogSumExp(const ExecContext& ctx, const LogSumExpArgs& args) {
  if (args.rows < 0 || args.cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("logsumexp: bad shape rows=", args.rows, " cols=", args.cols));
  }
  return Route(
      "logsumexp", ctx, [&] { reference::LogSumExp(args); },
      [&](ThreadPool* pool) { return cpu::LogSumExp(pool, args); },
      ANVIL_ON_GPU(LogSumExp(gpu, args)));
}

absl::Status CrossEntropy(const ExecContext& ctx, const CrossEntropyArgs& args) {
  if (args.t < 0 || args.v <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cross_entropy: bad shape T=", args.t, " V=", args.v));
  }
  for (int64_t t = 0; OnHost(ctx) && t < args.t; ++t) {
    if (args.targets[t] >= args.v) {
      return absl::InvalidArgumentError(absl::StrCat("cross_entropy: target ", args.targets[t],
                                                     " at row ", t, " is not below V=", args.v));
    }
  }
  return Route(
      "cross_entropy", ctx, [&] { reference::CrossEntropy(args); },
      [&](ThreadPool* pool) { return cpu::CrossEntropy(pool, args); },
      ANVIL_ON_GPU(CrossEntropy(gpu, args)));
}

absl::Status AdamW(const ExecContext& ctx, const AdamWArgs& args) {
  if (args.step < 1 || !(args.beta1 >= 0.0 && args.beta1 < 1.0) ||
      !(args.beta2 >= 0.0 && args.beta2 < 1.0) || args.n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("adamw: step=", args.step, " (need >= 1), beta1=",
                                                   args.beta1, ", beta2=", args.beta2,
                                                   " (need [0, 1)), n=", args.n));
  }
  return Route(
      "adamw", ctx, [&] { reference::AdamW(args); },
      [&](ThreadPool* pool) { return cpu::AdamW(pool, args); },
      ANVIL_ON_GPU(AdamW(gpu, args)));
}

// ---- Backward ops (layer_ops_backward.h, cross_entropy.h) ----------------------------------

absl::Status RmsNormBackward(const ExecContext& ctx, const RmsNormBackwardArgs& args) {
  if (args.t < 0 || args.c <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rms_norm_backward: bad shape T=", args.t, " C=", args.c));
  }
  return Route(
      "rms_norm_backward", ctx, [&] { reference::RmsNormBackward(args); },
      [&](ThreadPool* pool) { return cpu::RmsNormBackward(pool, args); },
      ANVIL_ON_GPU(RmsNormBackward(gpu, args)));
}

absl::Status CausalAttention(const ExecContext& ctx, const AttentionArgs& args) {
  if (args.t < 0 || args.h <= 0 || args.d <= 0 || args.h_kv <= 0 || args.h % args.h_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat("causal_attention: bad shape T=", args.t,
                                                   " H=", args.h, " Hkv=", args.h_kv,
                                                   " D=", args.d));
  }
  if (args.past != 0 || args.k_blocks != nullptr || args.v_blocks != nullptr ||
      args.k_blocks_f16 != nullptr || args.v_blocks_f16 != nullptr || args.blocks_transposed) {
    return absl::InvalidArgumentError(
        "causal_attention: whole sequences only (past = 0, contiguous K/V, no paged blocks)");
  }
  return Route(
      "causal_attention", ctx, [&] { reference::Attention(args); },
      [&](ThreadPool* pool) { return cpu::CausalAttention(pool, args); },
      ANVIL_ON_GPU(Attention(gpu, args)));
}

absl::Status AttentionBackward(const ExecContext& ctx, const AttentionBackwardArgs& args) {
  if (args.t < 0 || args.h <= 0 || args.d <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention_backward: bad shape T=", args.t, " H=", args.h, " D=", args.d));
  }
  if (args.h_kv <= 0 || args.h % args.h_kv != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention_backward: H=", args.h, " is not a multiple of Hkv=", args.h_kv));
  }
  return Route(
      "attention_backward", ctx, [&] { reference::AttentionBackward(args); },
      [&](ThreadPool* pool) { return cpu::AttentionBackward(pool, args); },
      ANVIL_ON_GPU(AttentionBackward(gpu, args)));
}

absl::Status SwiGluBackward(const ExecContext& ctx, const SwiGluBackwardArgs& args) {
  if (args.n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("swiglu_backward: n=", args.n, " < 0"));
  }
  return Route(
      "swiglu_backward", ctx, [&] { reference::SwiGluBackward(args); },
      [&](ThreadPool* pool) { return cpu::SwiGluBackward(pool, args); },
      ANVIL_ON_GPU(SwiGluBackward(gpu, args)));
}

absl::Status EmbeddingBackward(const ExecContext& ctx, const EmbeddingBackwardArgs& args) {
  if (args.t < 0 || args.v <= 0 || args.c <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("embedding_backward: bad shape T=", args.t,
                                                   " V=", args.v, " C=", args.c));
  }
  for (int64_t t = 0; OnHost(ctx) && t < args.t; ++t) {
    if (args.ids[t] < 0 || args.ids[t] >= args.v) {
      return absl::InvalidArgumentError(absl::StrCat("embedding_backward: token id ",
                                                     args.ids[t], " at position ", t,
                                                     " is outside [0, ", args.v, ")"));
    }
  }
  return Route(
      "embedding_backward", ctx, [&] { reference::EmbeddingBackward(args); },
      [&](ThreadPool* pool) { return cpu::EmbeddingBackward(pool, args); },
      ANVIL_ON_GPU(EmbeddingBackward(gpu, args)));
}

absl::Status CrossEntropyBackward(const ExecContext& ctx, const CrossEntropyBackwardArgs& args) {
  if (args.t < 0 || args.v <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cross_entropy_backward: bad shape T=", args.t, " V=", args.v));
  }
  for (int64_t t = 0; OnHost(ctx) && t < args.t; ++t) {
    if (args.targets[t] >= args.v) {
      return absl::InvalidArgumentError(absl::StrCat("cross_entropy_backward: target ",
                                                     args.targets[t], " at row ", t,
                                                     " is not below V=", args.v));
    }
  }
  return Route(
      "cross_entropy_backward", ctx, [&] { reference::CrossEntropyBackward(args); },
      [&](ThreadPool* pool) { return cpu::CrossEntropyBackward(pool, args); },
      ANVIL_ON_GPU(CrossEntropyBackward(gpu, args)));
}

}  // namespace anvil
