// The CPU F32 GEMM on AMX-BF16 tiles at fp32 accuracy (gemm_split_bf16_amx.cc): each float is
// split exactly into three bfloat16 parts, x = x0 + x1 + x2 (8 significant bits each; x0 =
// bf16(x), x1 = bf16(x - x0), x2 = x - x0 - x1), and a*b is computed as the six part products
// whose weight is at least 2^-16 of a0*b0:
//   a0*b0 + a0*b1 + a1*b0 + a0*b2 + a1*b1 + a2*b0
// each one exact (8 x 8 bits), summed in fp32 by the tile unit (TDPBF16PS), smallest first per
// 32-k chunk, into C per block of up to 768 k. What is left out (a1*b2 + a2*b1 + a2*b2) is at
// most ~2^-23 of |a*b|, about fp32's own rounding of one term. Measured against double sums in
// kernels_cpu_gemm_split_bf16_test: relative RMS error 1.05e-8 at K = 1536, where a plain fp32
// dot product (fma in k order) has 2.37e-8.
// Inputs must be finite (an infinity splits into inf + nan; the result is then NaN, not inf);
// bf16 parts below 2^-126 (inputs below ~2^-110) are read as zero by the tile unit.
#ifndef ANVIL_KERNELS_CPU_GEMM_SPLIT_BF16_H_
#define ANVIL_KERNELS_CPU_GEMM_SPLIT_BF16_H_

#include "absl/status/status.h"
#include "kernels/core/thread_pool.h"
#include "kernels/gemm.h"

namespace anvil::cpu {

// AMX-TILE and AMX-BF16 in CPUID and Linux's permission for the tile state; false when the
// environment sets ANVIL_NO_AMX. Checked once.
bool HasAmxBf16();

// Whether cpu::Gemm hands this product to SplitBf16Gemm: HasAmxBf16() and M, N, K all at least
// 32 with enough work to pay for splitting the operands (the rank-r LoRA products stay on
// sgemm); every non-empty product when the environment sets ANVIL_GEMM_SPLIT_BF16=all (the
// tiny-model tests use it to run the PyTorch oracle through this path).
bool SplitBf16GemmApplies(const GemmArgs& args);

// C = alpha * op(A) op(B) + beta * C as in kernels/gemm.h, any non-empty shape and alpha != 0
// (FailedPrecondition otherwise, or without AMX-BF16); argument checks are the caller's
// (cpu::Gemm, which calls it where SplitBf16GemmApplies). The packed operands live in a
// grow-only buffer of the calling thread: 6 bytes per element of B plus 1.2 MB per pool thread
// (170 MB for SmolLM2's 49152 x 576 LM head); ResourceExhausted when it cannot be allocated.
absl::Status SplitBf16Gemm(ThreadPool* pool, const GemmArgs& args);

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_GEMM_SPLIT_BF16_H_
