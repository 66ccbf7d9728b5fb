// CPU causal grouped-query attention over the KV cache, bit-identical to the reference (which
// follows llama.cpp's non-flash attention operation by operation): per (query token t, head h)
//   w[s] = VecDotOrderF32(q, k_s) * scale over D;
//   e[s] = ExpGgmlAvx2(w[s] - max), summed in double over blocks of 16 keys, each block reduced
//          in float by ReduceLanes16 (keys past the causal limit count as 0);
//   p[s] = e[s] * float(1 / sum);
//   out[d] = sum over s of v_s[d] * p[s] with the lane structure of llama.cpp's F32 dot over the
//          keys: key s in lane s % 16 of one accumulator (tinyBLAS order, T >= 2) or of
//          accumulator (s % 64) / 16 (vec_dot order, T == 1).
// V is transposed per call so that each output element is one such dot over contiguous keys.
// Work items (t, h) are dealt round-robin to the pool's threads, so the causal triangle's long
// rows spread evenly and results do not depend on the thread count.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ggml_order_avx2.h"
#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {
namespace {

// VecDotOrderF32 for d % 64 == 0, inlined: each 64-element round adds one product chunk to each
// of the four 16-lane accumulators.
inline float VecDotOrderF32By64(const float* q, const float* k, int64_t d) {
  __m256 acc[4][2];
  for (int c = 0; c < 4; ++c) {
    for (int h = 0; h < 2; ++h) {
      acc[c][h] = _mm256_mul_ps(_mm256_loadu_ps(q + 16 * c + 8 * h),
                                _mm256_loadu_ps(k + 16 * c + 8 * h));  // fma(q, k, 0)
    }
  }
  for (int64_t e = 64; e < d; e += 64) {
    for (int c = 0; c < 4; ++c) {
      for (int h = 0; h < 2; ++h) {
        const int64_t o = e + 16 * c + 8 * h;
        acc[c][h] = _mm256_fmadd_ps(_mm256_loadu_ps(q + o), _mm256_loadu_ps(k + o), acc[c][h]);
      }
    }
  }
  const __m256 lo =
      _mm256_add_ps(_mm256_add_ps(acc[0][0], acc[2][0]), _mm256_add_ps(acc[1][0], acc[3][0]));
  const __m256 hi =
      _mm256_add_ps(_mm256_add_ps(acc[0][1], acc[2][1]), _mm256_add_ps(acc[1][1], acc[3][1]));
  return ReduceLanes16(lo, hi);
}

// e[0, n) = VecDotOrderF32(q, k_s) * scale; returns the maximum.
float Scores(const float* q, const float* k, int64_t ks, int64_t n, int64_t d, float scale,
             float* e) {
  float mx = -INFINITY;
  for (int64_t s = 0; s < n; ++s) {
    const float dot =
        d % 64 == 0 ? VecDotOrderF32By64(q, k + s * ks, d) : VecDotOrderF32(q, k + s * ks, d);
    e[s] = dot * scale;
    mx = std::max(mx, e[s]);
  }
  return mx;
}

// e[s] <- ExpGgml(e[s] - mx) for s < n and 0 for s in [n, n rounded up to 16); returns the sum
// of the 16-key blocks' float ReduceLanes16, accumulated in double.
double ExpAndSum(float* e, int64_t n, float mx) {
  const __m256 mv = _mm256_set1_ps(mx);
  double sum = 0.0;
  for (int64_t s = 0; s < n; s += 16) {
    __m256 half[2];
    for (int h = 0; h < 2; ++h) {
      const int64_t o = s + 8 * h;
      const __m256 v = ExpGgmlAvx2(_mm256_sub_ps(_mm256_loadu_ps(e + o), mv));
      half[h] = _mm256_and_ps(v, LaneMask(n - o));
      _mm256_storeu_ps(e + o, half[h]);
    }
    sum += ReduceLanes16(half[0], half[1]);
  }
  return sum;
}

// dot(x, y) over n elements in tinyBLAS order: one 16-lane accumulator, element e in lane e % 16,
// lanes past n untouched, then ReduceLanes16.
inline float GemmOrderF32(const float* x, const float* y, int64_t n) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  const int64_t full = n / 16 * 16;
  for (int64_t e = 0; e < full; e += 16) {
    lo = _mm256_fmadd_ps(_mm256_loadu_ps(x + e), _mm256_loadu_ps(y + e), lo);
    hi = _mm256_fmadd_ps(_mm256_loadu_ps(x + e + 8), _mm256_loadu_ps(y + e + 8), hi);
  }
  if (full < n) {
    __m256* acc[2] = {&lo, &hi};
    for (int h = 0; h < 2; ++h) {
      const int64_t o = full + 8 * h;
      const __m256 mask = LaneMask(n - o);
      const __m256i imask = _mm256_castps_si256(mask);
      const __m256 prod = _mm256_fmadd_ps(_mm256_maskload_ps(x + o, imask),
                                          _mm256_maskload_ps(y + o, imask), *acc[h]);
      *acc[h] = _mm256_blendv_ps(*acc[h], prod, mask);
    }
  }
  return ReduceLanes16(lo, hi);
}

// vt[hk][i][s] = v[s][hk][i] for s < n_keys: each output element is then the dot of a row of vt
// with the probabilities, in llama.cpp's order over the keys. Rows are `stride` floats apart.
void TransposeV(const AttentionArgs& a, int64_t hk, int64_t s0, int64_t s1, int64_t stride,
                float* vt) {
  for (int64_t s = s0; s < s1; ++s) {
    const float* vr = a.v + (s * a.h_kv + hk) * a.d;
    for (int64_t i = 0; i < a.d; ++i) vt[(hk * a.d + i) * stride + s] = vr[i];
  }
}

void Head(const AttentionArgs& a, int64_t t, int64_t h, const float* vt, int64_t stride, float* e) {
  const int64_t hk = h / (a.h / a.h_kv);
  const int64_t n = a.past + t + 1;
  const float* q = a.q + (t * a.h + h) * a.d;
  const float mx = Scores(q, a.k + hk * a.d, a.h_kv * a.d, n, a.d, a.scale, e);
  const float inv = static_cast<float>(1.0 / ExpAndSum(e, n, mx));
  for (int64_t s = 0; s < n; ++s) e[s] *= inv;
  float* out = a.out + (t * a.h + h) * a.d;
  const float* vh = vt + hk * a.d * stride;
  for (int64_t i = 0; i < a.d; ++i) {
    out[i] = a.t == 1 ? VecDotOrderF32(vh + i * stride, e, n) : GemmOrderF32(vh + i * stride, e, n);
  }
}

}  // namespace

absl::Status Attention(ThreadPool* pool, const AttentionArgs& a) {
  if (a.t <= 0 || a.h <= 0) return absl::OkStatus();
  const int64_t keys = a.past + a.t;
  const int64_t stride = (keys + 15) / 16 * 16;
  // V transposed per kv head, so that P*V reads keys contiguously.
  std::vector<float> vt(a.h_kv * a.d * stride);
  constexpr int64_t kKeyBlock = 256;
  const int64_t key_blocks = (keys + kKeyBlock - 1) / kKeyBlock;
  ParallelFor(pool, a.h_kv * key_blocks, 1, [&](int64_t u0, int64_t u1, int) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t hk = u / key_blocks, s0 = (u % key_blocks) * kKeyBlock;
      TransposeV(a, hk, s0, std::min(keys, s0 + kKeyBlock), stride, vt.data());
    }
  });
  // (t, h) items round-robin over the workers.
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t items = a.t * a.h;
  const int64_t slots = std::min<int64_t>(threads, items);
  std::vector<float> scores(slots * stride);
  ParallelFor(pool, slots, 1, [&](int64_t w0, int64_t w1, int) {
    for (int64_t w = w0; w < w1; ++w) {
      for (int64_t item = w; item < items; item += slots) {
        Head(a, item / a.h, item % a.h, vt.data(), stride, scores.data() + w * stride);
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
