// CUDA MatMul (kernels/matmul.h): validates, then picks the path by weight type and M.
//   F32 weights        cuBLAS FP32 (no TF32).
//   F16/BF16 weights   x rounded to F16/BF16 in the workspace (as the reference rounds it), then
//                      cuBLAS with 16-bit inputs and FP32 accumulation.
//   Q8_0/Q4_0/Q4_1     M <= kGemvMaxM: x quantized to Q8_0/Q8_1 exactly as the reference, then our
//                      memory-bound GEMV (matmul_quant.cu) with integer block dots: the reference's
//                      numbers up to float summation order. One fused kernel that quantizes x
//                      itself where x fits its shared memory (Context::gemv_activations()),
//                      else a quantization kernel and the GEMV; the same bits either way.
//                      M > kGemvMaxM: compute bound, so W is dequantized to F16 in the workspace
//                      (in chunks of rows) and x is written as its Q8 round trip in F16, then
//                      cuBLAS F16 GEMM with FP32 accumulation ("cuBLAS for large dense GEMMs").
// The kernels live in convert.cu and matmul_quant.cu; this file only maps arguments.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/cuda/cublas_gemm.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/launch_matmul.h"

namespace anvil::cuda {
namespace {

// Up to this many activation rows the quantized product streams W once per 8 rows with the
// GEMV; above it, dequantize + cuBLAS (2 bytes written and read per weight, amortized over M).
constexpr int64_t kGemvMaxM = 16;
// Up to this K the fused GEMV is the default. Measured on an H100 (docs/BENCHMARKS.md): at
// K = 576 and 4096 it beats two kernels by 8-16%; at K = 14336, where every CTA quantizes
// 56 KB of x, it loses by 12-16%. Between the two it is unmeasured, so two kernels stay.
constexpr int64_t kGemvFusedMaxK = 4096;
// Workspace cap for one chunk of dequantized F16 weight rows.
constexpr int64_t kDequantChunkBytes = int64_t{256} << 20;

size_t AlignUp(size_t v) { return (v + 255) / 256 * 256; }

QuantType ToQuant(DType t) {
  switch (t) {
    case DType::kQ4_0:
      return QuantType::kQ4_0;
    case DType::kQ4_1:
      return QuantType::kQ4_1;
    default:
      return QuantType::kQ8_0;
  }
}

bool Aligned(const void* p, uintptr_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

absl::Status Validate(const MatMulArgs& a) {
  if (a.m < 0 || a.n < 0 || a.k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("matmul: negative shape M=", a.m, " N=", a.n, " K=", a.k));
  }
  if (a.k % BlockElems(a.w_type) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("matmul: K=", a.k, " is not a multiple of the ",
                                                   DTypeName(a.w_type), " block size (",
                                                   BlockElems(a.w_type), ")"));
  }
  if (a.w == nullptr) return absl::InvalidArgumentError("matmul: w is null");
  if (a.x == nullptr) return absl::InvalidArgumentError("matmul: x is null");
  if (a.y == nullptr) return absl::InvalidArgumentError("matmul: y is null");
  // F32 rows are floats; every other layout is read in 16-bit units.
  const uintptr_t w_align = a.w_type == DType::kF32 ? 4 : 2;
  if (!Aligned(a.w, w_align)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "matmul: w is not ", w_align, "-byte aligned, as ", DTypeName(a.w_type), " rows must be"));
  }
  if (!Aligned(a.x, 4)) return absl::InvalidArgumentError("matmul: x is not 4-byte aligned");
  if (!Aligned(a.y, 4)) return absl::InvalidArgumentError("matmul: y is not 4-byte aligned");
  for (int64_t v : {a.m, a.n, a.k}) {
    if (v > kCublasMaxDim) {
      return absl::InvalidArgumentError(
          absl::StrCat("matmul: M=", a.m, " N=", a.n, " K=", a.k, ": each must be below 2^31"));
    }
  }
  return absl::OkStatus();
}

// y = x W^T for row-major x [M][K] and W [N][K] of the same element type.
RowMajorGemm XTimesWt(const MatMulArgs& a, const void* x, const void* w, GemmElem type, int64_t n,
                      float* y) {
  RowMajorGemm g;
  g.trans_b = true;
  g.m = a.m;
  g.n = n;
  g.k = a.k;
  g.a = x;
  g.a_type = type;
  g.lda = a.k;
  g.b = w;
  g.b_type = type;
  g.ldb = a.k;
  g.c = y;
  g.ldc = a.n;
  return g;
}

absl::Status MatMulHalf(Context& ctx, const MatMulArgs& a) {
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const bool bf16 = a.w_type == DType::kBF16;
  ANVIL_ASSIGN_OR_RETURN(void* xh, ctx.Workspace(static_cast<size_t>(a.m * a.k) * 2));
  ANVIL_RETURN_IF_ERROR(CudaStatus(
      LaunchConvertToHalf(a.x, a.m * a.k, bf16 ? HalfType::kBF16 : HalfType::kF16, xh, stream),
      "matmul: convert x to 16-bit"));
  return CublasRowMajorGemm(
      ctx, XTimesWt(a, xh, a.w, bf16 ? GemmElem::kBF16 : GemmElem::kF16, a.n, a.y), "matmul");
}

absl::Status MatMulQuantGemv(Context& ctx, const MatMulArgs& a) {
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  using Acts = Context::GemvActivations;
  const Acts mode = ctx.gemv_activations();
  const bool fused =
      mode == Acts::kFused || (mode == Acts::kAuto && a.k <= kGemvFusedMaxK);
  if (fused && Aligned(a.x, 16) &&
      GemvQuantFusedFits(a.m, a.k, ctx.smem_per_sm(), ctx.smem_per_block_optin())) {
    return CudaStatus(
        LaunchGemvQuantFused(ToQuant(a.w_type), a.w, a.n, a.k, a.x, a.m, a.y, ctx.sm_count(),
                             ctx.smem_per_block_optin(), stream),
        "matmul: fused quantized gemv");
  }
  const auto m = static_cast<size_t>(a.m), k = static_cast<size_t>(a.k), nb = k / kQK;
  const size_t q_bytes = AlignUp(m * k), d_bytes = AlignUp(m * nb * sizeof(float));
  ANVIL_ASSIGN_OR_RETURN(void* ws, ctx.Workspace(q_bytes + 2 * d_bytes));
  auto* base = static_cast<uint8_t*>(ws);
  auto* xq = reinterpret_cast<int8_t*>(base);
  auto* xd = reinterpret_cast<float*>(base + q_bytes);
  auto* xs = reinterpret_cast<float*>(base + q_bytes + d_bytes);
  ANVIL_RETURN_IF_ERROR(CudaStatus(LaunchQuantizeActivationsQ8(a.x, a.m, a.k, xq, xd, xs, stream),
                                   "matmul: quantize x"));
  return CudaStatus(LaunchGemvQuant(ToQuant(a.w_type), a.w, a.n, a.k, xq, xd, xs, a.m, a.y,
                                    ctx.sm_count(), stream),
                    "matmul: quantized gemv");
}

absl::Status MatMulQuantDequant(Context& ctx, const MatMulArgs& a) {
  const auto stream = static_cast<cudaStream_t>(ctx.stream());
  const int64_t row_f16_bytes = a.k * 2;
  const int64_t chunk_rows = std::clamp<int64_t>(kDequantChunkBytes / row_f16_bytes, 1, a.n);
  const size_t x_bytes = AlignUp(static_cast<size_t>(a.m * a.k) * 2);
  const size_t w_bytes = static_cast<size_t>(chunk_rows * row_f16_bytes);
  ANVIL_ASSIGN_OR_RETURN(void* ws, ctx.Workspace(x_bytes + w_bytes));
  auto* xh = static_cast<uint8_t*>(ws);
  auto* wh = xh + x_bytes;
  ANVIL_RETURN_IF_ERROR(
      CudaStatus(LaunchQuantizeRoundTripF16(a.x, a.m, a.k, xh, stream), "matmul: quantize x"));
  const QuantType qt = ToQuant(a.w_type);
  const int64_t row_bytes = a.k / kQK * BlockBytes(a.w_type);
  // Same stream: the GEMM of one chunk finishes before the next dequantization overwrites wh.
  for (int64_t n0 = 0; n0 < a.n; n0 += chunk_rows) {
    const int64_t rows = std::min(chunk_rows, a.n - n0);
    const auto* w = static_cast<const uint8_t*>(a.w) + n0 * row_bytes;
    ANVIL_RETURN_IF_ERROR(
        CudaStatus(LaunchDequantizeToF16(qt, w, rows, a.k, wh, stream), "matmul: dequantize w"));
    ANVIL_RETURN_IF_ERROR(
        CublasRowMajorGemm(ctx, XTimesWt(a, xh, wh, GemmElem::kF16, rows, a.y + n0), "matmul"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status MatMul(Context& ctx, const MatMulArgs& a) {
  ANVIL_RETURN_IF_ERROR(Validate(a));
  if (a.m == 0 || a.n == 0) return absl::OkStatus();
  if (a.k == 0) {  // empty dot products
    return CudaStatus(cudaMemsetAsync(a.y, 0, static_cast<size_t>(a.m * a.n) * sizeof(float),
                                      static_cast<cudaStream_t>(ctx.stream())),
                      "matmul: zero y");
  }
  switch (a.w_type) {
    case DType::kF32:
      return CublasRowMajorGemm(ctx, XTimesWt(a, a.x, a.w, GemmElem::kF32, a.n, a.y), "matmul");
    case DType::kF16:
    case DType::kBF16:
      return MatMulHalf(ctx, a);
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
      return a.m <= kGemvMaxM ? MatMulQuantGemv(ctx, a) : MatMulQuantDequant(ctx, a);
  }
  return absl::UnimplementedError(
      absl::StrCat("matmul: no CUDA kernel for ", DTypeName(a.w_type), " weights"));
}

}  // namespace anvil::cuda
