// CPU SwiGluBackward and EmbeddingBackward (layer_ops_backward.h). SwiGlu's backward is one
// AVX2 pass (sigmoid from ggml's vectorized exp, kernels/cpu/simd_avx2.h) split across the pool.
// The embedding scatter-add gives each pool slot the table rows whose id is congruent to the
// slot modulo the slot count, so every row is written by one thread, in token order: the result
// is the reference's bits whatever the thread count.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {
namespace {

constexpr int64_t kChunkElems = 16384;  // elements per pool chunk, as in layer_ops.cc

// With s = sigmoid(g) = 1 / (1 + e^-g): dup = dout * (g * s), dgate = (dout * up) * s *
// (1 + g * (1 - s)). e^-g overflowing to +inf gives s = 0 and both gradients 0 (their limits).
inline void SwiGluBackwardStep(__m256 g, __m256 up, __m256 dout, __m256* dgate, __m256* dup) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 s =
      _mm256_div_ps(one, _mm256_add_ps(one, ExpGgmlAvx2(_mm256_sub_ps(_mm256_setzero_ps(), g))));
  *dup = _mm256_mul_ps(dout, _mm256_mul_ps(g, s));
  const __m256 slope = _mm256_fmadd_ps(g, _mm256_sub_ps(one, s), one);
  *dgate = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(dout, up), s), slope);
}

}  // namespace

absl::Status SwiGluBackward(ThreadPool* pool, const SwiGluBackwardArgs& a) {
  ParallelFor(pool, a.n, kChunkElems, [&](int64_t i0, int64_t i1, int) {
    // Every input vector is loaded before either output is stored: dgate or dup may alias dout.
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
      __m256 dg, du;
      SwiGluBackwardStep(_mm256_loadu_ps(a.gate + i), _mm256_loadu_ps(a.up + i),
                         _mm256_loadu_ps(a.dout + i), &dg, &du);
      _mm256_storeu_ps(a.dgate + i, dg);
      _mm256_storeu_ps(a.dup + i, du);
    }
    if (i < i1) {  // the tail through the same vector code, padded
      alignas(32) float g[8] = {}, u[8] = {}, d[8] = {}, og[8], ou[8];
      const size_t bytes = static_cast<size_t>(i1 - i) * sizeof(float);
      std::memcpy(g, a.gate + i, bytes);
      std::memcpy(u, a.up + i, bytes);
      std::memcpy(d, a.dout + i, bytes);
      __m256 dg, du;
      SwiGluBackwardStep(_mm256_load_ps(g), _mm256_load_ps(u), _mm256_load_ps(d), &dg, &du);
      _mm256_store_ps(og, dg);
      _mm256_store_ps(ou, du);
      std::memcpy(a.dgate + i, og, bytes);
      std::memcpy(a.dup + i, ou, bytes);
    }
  });
  return absl::OkStatus();
}

absl::Status EmbeddingBackward(ThreadPool* pool, const EmbeddingBackwardArgs& a) {
  if (a.t <= 0) return absl::OkStatus();
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t slots = std::max<int64_t>(1, std::min<int64_t>(threads, a.t * a.c / kChunkElems));
  ParallelFor(pool, slots, 1, [&](int64_t s0, int64_t s1, int) {
    for (int64_t s = s0; s < s1; ++s) {
      for (int64_t t = 0; t < a.t; ++t) {
        if (a.ids[t] % slots != s) continue;  // ids are in [0, V): dispatch checked them
        float* dst = a.dtable + static_cast<int64_t>(a.ids[t]) * a.c;  // [C]
        const float* src = a.dy + t * a.c;                             // [C]
        int64_t i = 0;
        for (; i + 8 <= a.c; i += 8) {
          _mm256_storeu_ps(dst + i,
                           _mm256_add_ps(_mm256_loadu_ps(dst + i), _mm256_loadu_ps(src + i)));
        }
        for (; i < a.c; ++i) dst[i] += src[i];
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
