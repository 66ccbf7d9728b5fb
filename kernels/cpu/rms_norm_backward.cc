// CPU RmsNormBackward (layer_ops_backward.h): rows split across the pool, AVX2 over channels.
// Per row the sums of x^2 and w*dy*x run in float lanes (folded to double at the end), r and the
// r^3/C factor are formed in double, and dx is accumulated in float. dw (when wanted) is summed
// per pool slot into private [C] partials that are then added to dw in slot order, so no two
// threads write one element and the result does not depend on scheduling.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {
namespace {

// Elements of streaming work per pool slot: below this a thread costs more than it saves.
constexpr int64_t kChunkElems = 16384;

// One row: dx += r * w * dy - k * x with k = r^3 / C * sum(w * dy * x); partial += dy * x * r
// when partial is not null. x, dy, dx: [c]; w, partial: [c].
void Row(const float* x, const float* w, const float* dy, float* dx, float* partial, int64_t c,
         float eps) {
  __m256 sq0 = _mm256_setzero_ps(), sq1 = sq0, dot0 = sq0, dot1 = sq0;
  int64_t i = 0;
  for (; i + 16 <= c; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    sq0 = _mm256_fmadd_ps(x0, x0, sq0);
    sq1 = _mm256_fmadd_ps(x1, x1, sq1);
    dot0 =
        _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(dy + i)), x0, dot0);
    dot1 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(dy + i + 8)),
                           x1, dot1);
  }
  for (; i + 8 <= c; i += 8) {
    const __m256 x0 = _mm256_loadu_ps(x + i);
    sq0 = _mm256_fmadd_ps(x0, x0, sq0);
    dot0 =
        _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(dy + i)), x0, dot0);
  }
  double sum_sq = HorizontalSum(_mm256_add_ps(sq0, sq1));
  double dot = HorizontalSum(_mm256_add_ps(dot0, dot1));
  for (int64_t j = i; j < c; ++j) {
    sum_sq += static_cast<double>(x[j]) * x[j];
    dot += static_cast<double>(w[j]) * dy[j] * x[j];
  }
  const double r_d = 1.0 / std::sqrt(sum_sq / static_cast<double>(c) + eps);
  const float r = static_cast<float>(r_d);
  const float k = static_cast<float>(r_d * r_d * r_d / static_cast<double>(c) * dot);
  const __m256 rv = _mm256_set1_ps(r), kv = _mm256_set1_ps(k);
  i = 0;
  for (; i + 8 <= c; i += 8) {
    const __m256 xv = _mm256_loadu_ps(x + i), gv = _mm256_loadu_ps(dy + i);
    const __m256 term =
        _mm256_fnmadd_ps(kv, xv, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(w + i), gv), rv));
    _mm256_storeu_ps(dx + i, _mm256_add_ps(_mm256_loadu_ps(dx + i), term));
    if (partial != nullptr) {
      _mm256_storeu_ps(partial + i,
                       _mm256_fmadd_ps(_mm256_mul_ps(gv, xv), rv, _mm256_loadu_ps(partial + i)));
    }
  }
  for (; i < c; ++i) {
    dx[i] += (w[i] * dy[i]) * r - k * x[i];
    if (partial != nullptr) partial[i] += (dy[i] * x[i]) * r;
  }
}

}  // namespace

absl::Status RmsNormBackward(ThreadPool* pool, const RmsNormBackwardArgs& a) {
  if (a.t <= 0) return absl::OkStatus();
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t rows_per_slot = std::max<int64_t>(1, kChunkElems / a.c);
  const int64_t slots =
      std::max<int64_t>(1, std::min<int64_t>(threads, (a.t + rows_per_slot - 1) / rows_per_slot));
  // partials: [slots][C], one private dw accumulator per slot.
  std::vector<float> partials(a.dw != nullptr ? static_cast<size_t>(slots * a.c) : 0, 0.0f);
  ParallelFor(pool, slots, 1, [&](int64_t s0, int64_t s1, int) {
    for (int64_t s = s0; s < s1; ++s) {
      float* partial = a.dw != nullptr ? partials.data() + s * a.c : nullptr;
      const int64_t t0 = a.t * s / slots, t1 = a.t * (s + 1) / slots;
      for (int64_t t = t0; t < t1; ++t) {
        Row(a.x + t * a.c, a.w, a.dy + t * a.c, a.dx + t * a.c, partial, a.c, a.eps);
      }
    }
  });
  if (a.dw != nullptr) {
    for (int64_t s = 0; s < slots; ++s) {
      const float* partial = partials.data() + s * a.c;
      int64_t i = 0;
      for (; i + 8 <= a.c; i += 8) {
        _mm256_storeu_ps(a.dw + i,
                         _mm256_add_ps(_mm256_loadu_ps(a.dw + i), _mm256_loadu_ps(partial + i)));
      }
      for (; i < a.c; ++i) a.dw[i] += partial[i];
    }
  }
  return absl::OkStatus();
}

}  // namespace anvil::cpu
