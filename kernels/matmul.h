// Matrix multiplication against a weight matrix stored in any DType.
//
// Shapes (row-major): x [M][K] float, W [N][K] in `w_type` (each row RowBytes(w_type, K) bytes,
// the GGUF layout with ne = [K, N]), y [M][N] float: y[m][n] = dot(x[m], W[n]).
//
// Numerics follow llama.cpp's CPU backend so results agree to the last bits that matter:
// F32 weights: float dot. F16/BF16 weights: x is rounded to F16/BF16 first. Q8_0/Q4_0 weights:
// x is quantized per 32-block to Q8_0 and blocks are dotted in integers, scaled by d_w*d_x.
// Q4_1 weights: x is quantized to Q8_1; each block adds d_w*d_x*sum(q_w*q_x) + m_w*s_x.
// That is ExecContext::matmul == kLlamaCpp (the default); kBlockSum (kernels/backend.h) sums the
// same exact block products in one chain per output, the same for every M.
#ifndef ANVIL_KERNELS_MATMUL_H_
#define ANVIL_KERNELS_MATMUL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "kernels/dtype.h"

namespace anvil {

struct MatMulArgs {
  DType w_type = DType::kF32;
  const void* w = nullptr;   // [N][K] in w_type
  const float* x = nullptr;  // [M][K]
  float* y = nullptr;        // [M][N]; must not alias x
  int64_t m = 0, n = 0, k = 0;
};

// InvalidArgument for bad shapes (K not a multiple of the block size, null pointers);
// Unimplemented when the backend has no kernel for w_type.
absl::Status MatMul(const ExecContext& ctx, const MatMulArgs& args);

// Several products of the same activations against different weights of one type (a layer's
// q/k/v or gate/up projections): the results of one MatMul per entry, bit for bit. The CPU
// backend prepares x once and spreads all the entries' tiles over one pass of the thread pool.
// InvalidArgument unless every entry has the same x, M, K and w_type.
absl::Status MatMulShared(const ExecContext& ctx, absl::Span<const MatMulArgs> calls);

}  // namespace anvil

#endif  // ANVIL_KERNELS_MATMUL_H_
