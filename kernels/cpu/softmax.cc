// CPU row softmax and log-sum-exp (kernels/softmax.h): AVX2, rows split across the pool. Each
// row takes a max pass, an exp-and-sum pass (which, for softmax, writes the exponentials to y)
// and, for softmax, a scaling pass; a row of V = 49152 floats (192 KB) stays in L2 between
// passes, so memory sees one read of x and one write of y. Results match the reference within
// a few ulps (see softmax_avx2.h for the error budget), not bitwise. Dispatch has checked the
// shape. A single row runs on one thread.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/softmax_avx2.h"

namespace anvil::cpu {
namespace {

// Elements per pool chunk: below this, waking a thread costs more than it saves.
constexpr int64_t kChunkElems = 16384;

int64_t RowsPerChunk(int64_t cols) { return std::max<int64_t>(1, kChunkElems / cols); }

// y[c] *= k (y: [n]).
void ScaleRow(float* y, int64_t n, float k) {
  const __m256 kv = _mm256_set1_ps(k);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), kv));
  for (; i < n; ++i) y[i] *= k;
}

}  // namespace

absl::Status Softmax(ThreadPool* pool, const SoftmaxArgs& a) {
  ParallelFor(pool, a.rows, RowsPerChunk(a.cols), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = a.x + r * a.cols;  // [C]
      float* y = a.y + r * a.cols;        // [C]
      const float mx = RowMaxAvx2(x, a.cols, a.scale);
      const double sum = RowExpSumAvx2<true>(x, a.cols, a.scale, mx, y);
      // One reciprocal per row (rounded from double), then a multiply per element: one more
      // rounding than the reference's division, well inside the tolerance.
      ScaleRow(y, a.cols, static_cast<float>(1.0 / sum));
    }
  });
  return absl::OkStatus();
}

absl::Status LogSumExp(ThreadPool* pool, const LogSumExpArgs& a) {
  ParallelFor(pool, a.rows, RowsPerChunk(a.cols), [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* x = a.x + r * a.cols;  // [C]
      const float mx = RowMaxAvx2(x, a.cols, 1.0f);
      const double sum = RowExpSumAvx2<false>(x, a.cols, 1.0f, mx, nullptr);
      a.out[r] = static_cast<float>(static_cast<double>(mx) + std::log(sum));
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
