// CPU causal grouped-query attention over the KV cache, bit-identical to the reference (which
// follows llama.cpp's non-flash attention operation by operation): per (query token t, head h)
//   w[s] = VecDotOrderF32(q, k_s) * scale over D;
//   e[s] = ExpGgmlAvx2(w[s] - max), summed in double over blocks of 16 keys, each block reduced
//          in float by ReduceLanes16 (keys past the causal limit count as 0);
//   p[s] = e[s] * float(1 / sum);
//   out[d] = sum over s of v_s[d] * p[s] with the lane structure of llama.cpp's F32 dot over the
//          keys: key s in lane s % 16 of one accumulator (tinyBLAS order, T >= 2) or of
//          accumulator (s % 64) / 16 (vec_dot order, T == 1).
// Prefill transposes V per call so that each output element is one such dot over contiguous keys;
// decode accumulates into 64 slot rows instead (one pass over V in key order).
// Work items (t, h) are dealt round-robin to the pool's threads, so the causal triangle's long
// rows spread evenly and results do not depend on the thread count.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "kernels/cpu/attention_lanes.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/ggml_order_avx2.h"
#include "kernels/cpu/matmul_kernels.h"
#include "kernels/cpu/simd_avx2.h"

namespace anvil::cpu {
namespace {

// VecDotOrderF32 for d % 64 == 0, inlined: each 64-element round adds one product chunk to each
// of the four 16-lane accumulators.
[[gnu::always_inline]] inline float VecDotOrderF32By64(const float* q, const float* k, int64_t d) {
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

// Calls f(s, row) for the cache rows s in [0, n) of kv head hk in order, walking a paged cache
// (AttentionArgs::k_blocks / v_blocks) block by block.
template <class F>
void ForEachRow(const AttentionArgs& a, const float* flat, const float* const* blocks, int64_t hk,
                int64_t n, F f) {
  const int64_t stride = a.h_kv * a.d;
  if (blocks == nullptr) {
    for (int64_t s = 0; s < n; ++s) f(s, flat + s * stride + hk * a.d);
    return;
  }
  for (int64_t b = 0, s = 0; s < n; ++b) {
    const float* row = blocks[b] + hk * a.d;
    const int64_t end = std::min(n, s + a.block_rows);
    // Blocks are scattered over the pool, out of the hardware prefetcher's sight: ask for the
    // next block's rows of this head while this one is read.
    if (end < n) {
      const int64_t next_rows = std::min(a.block_rows, n - end);
      const char* next = reinterpret_cast<const char*>(blocks[b + 1] + hk * a.d);
      for (int64_t r = 0; r < next_rows; ++r) {
        for (int64_t off = 0; off < a.d * 4; off += 64) {
          _mm_prefetch(next + r * stride * 4 + off, _MM_HINT_T0);
        }
      }
    }
    for (; s < end; ++s, row += stride) f(s, row);
  }
}

// e[0, n) = VecDotOrderF32(q, k_s) * scale over the K rows of kv head hk; returns the maximum.
float Scores(const AttentionArgs& a, const float* q, int64_t hk, int64_t n, float* e) {
  float mx = -INFINITY;
  const int64_t d = a.d;
  ForEachRow(a, a.k, a.k_blocks, hk, n, [&](int64_t s, const float* k) {
    const float dot = d % 64 == 0 ? VecDotOrderF32By64(q, k, d) : VecDotOrderF32(q, k, d);
    e[s] = dot * a.scale;
    mx = std::max(mx, e[s]);
  });
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
  const int64_t d8 = a.d / 8 * 8;
  // The rows' addresses once (a paged cache has no single stride).
  thread_local std::vector<const float*> rows;
  rows.resize(static_cast<size_t>(s1 - s0));
  if (a.v_blocks == nullptr) {
    for (int64_t s = s0; s < s1; ++s) rows[s - s0] = a.v + (s * a.h_kv + hk) * a.d;
  } else {
    for (int64_t s = s0; s < s1; ++s) rows[s - s0] = CacheRow(a, a.v, a.v_blocks, s, hk);
  }
  auto vrow = [&](int64_t s) { return rows[static_cast<size_t>(s - s0)]; };
  int64_t s = s0;
  // 8 keys x 8 dims at a time through an in-register transpose; dims outer, so that each block of
  // 8 output rows is written front to back.
  const int64_t s8 = s0 + (s1 - s0) / 8 * 8;
  for (int64_t i = 0; i < d8; i += 8) {
    for (s = s0; s < s8; s += 8) {
      __m256 r[8];
      for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(vrow(s + j) + i);
      const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      const __m256 c[8] = {
          _mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
          _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
          _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
          _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(vt + (hk * a.d + i + j) * stride + s, c[j]);
    }
  }
  for (int64_t i = d8; i < a.d; ++i) {
    for (s = s0; s < s8; ++s) vt[(hk * a.d + i) * stride + s] = vrow(s)[i];
  }
  s = s8;
  for (; s < s1; ++s) {
    const float* vr = vrow(s);
    for (int64_t i = 0; i < a.d; ++i) vt[(hk * a.d + i) * stride + s] = vr[i];
  }
}

// Decode (T == 1, vec_dot order over the keys) without transposing V: slot rows lanes[64][D],
// key s accumulating into slot s % 64 (accumulator (s % 64) / 16, lane s % 16) with V read in
// key order; then the slots are reduced lane-wise in llama.cpp's order.
void WeightedSumSlots(const AttentionArgs& a, const float* p, int64_t hk, int64_t n,
                      float* lanes, float* out) {
  constexpr int kSlots = 64;
  const int64_t d = a.d;
  // Slots no key reaches are zero; a slot's first key writes fma(v, p, 0) instead of
  // accumulating onto a zeroed row (the same value; 16 KB less to clear per head).
  std::fill(lanes + std::min<int64_t>(n, kSlots) * d, lanes + kSlots * d, 0.0f);
  const int64_t dv = d / 8 * 8;
  ForEachRow(a, a.v, a.v_blocks, hk, n, [&](int64_t s, const float* vr) {
    float* row = lanes + (s % kSlots) * d;
    const __m256 ps = _mm256_set1_ps(p[s]);
    if (s < kSlots) {
      for (int64_t i = 0; i < dv; i += 8) {
        _mm256_storeu_ps(row + i,
                         _mm256_fmadd_ps(_mm256_loadu_ps(vr + i), ps, _mm256_setzero_ps()));
      }
      for (int64_t i = dv; i < d; ++i) row[i] = std::fma(vr[i], p[s], 0.0f);
      return;
    }
    for (int64_t i = 0; i < dv; i += 8) {
      _mm256_storeu_ps(row + i,
                       _mm256_fmadd_ps(_mm256_loadu_ps(vr + i), ps, _mm256_loadu_ps(row + i)));
    }
    for (int64_t i = dv; i < d; ++i) row[i] = std::fma(vr[i], p[s], row[i]);
  });
  for (int64_t i = 0; i < d; i += 8) {
    const __m256i m = _mm256_castps_si256(LaneMask(d - i));
    auto load = [&](int slot) { return _mm256_maskload_ps(lanes + slot * d + i, m); };
    __m256 l[16];
    // (acc0 + acc2) + (acc1 + acc3), then ReduceLanes16 lane-wise: 8 onto 8, 4 onto 4,
    // (0 + 2) + (1 + 3).
    for (int j = 0; j < 16; ++j) {
      l[j] = _mm256_add_ps(_mm256_add_ps(load(j), load(j + 32)),
                           _mm256_add_ps(load(j + 16), load(j + 48)));
    }
    for (int j = 0; j < 8; ++j) l[j] = _mm256_add_ps(l[j + 8], l[j]);
    for (int j = 0; j < 4; ++j) l[j] = _mm256_add_ps(l[j + 4], l[j]);
    _mm256_maskstore_ps(out + i, m,
                        _mm256_add_ps(_mm256_add_ps(l[0], l[2]), _mm256_add_ps(l[1], l[3])));
  }
}

// One (t, h) item. vt: V transposed (T >= 2), or null (decode: `lanes` scratch of 64 * D).
void Head(const AttentionArgs& a, int64_t t, int64_t h, const float* vt, int64_t stride, float* e,
          float* lanes) {
  const int64_t hk = h / (a.h / a.h_kv);
  const int64_t n = a.past + t + 1;
  const float* q = a.q + (t * a.h + h) * a.d;
  const float mx = Scores(a, q, hk, n, e);
  const float inv = static_cast<float>(1.0 / ExpAndSum(e, n, mx));
  for (int64_t s = 0; s < n; ++s) e[s] *= inv;
  float* out = a.out + (t * a.h + h) * a.d;
  if (vt == nullptr) {
    WeightedSumSlots(a, e, hk, n, lanes, out);
    return;
  }
  const float* vh = vt + hk * a.d * stride;
  for (int64_t i = 0; i < a.d; ++i) out[i] = GemmOrderF32(vh + i * stride, e, n);
}

// Transposed blocks (keys in lanes, float or F16) read in place by the AVX-512 kernels: one work
// item per (query t, kv head), whose query heads share each load of V.
template <class T>
void LaneAttention(ThreadPool* pool, const AttentionArgs& a, const T* const* k_blocks,
                   const T* const* v_blocks) {
  const int64_t group = a.h / a.h_kv;
  const int64_t stride = (a.past + a.t + 15) / 16 * 16;
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t items = a.t * a.h_kv;
  const int64_t slots = std::min<int64_t>(threads, items);
  std::vector<float> scratch(slots * group * stride);  // [slot][group][stride] probabilities
  ParallelFor(pool, slots, 1, [&](int64_t w0, int64_t w1, int) {
    for (int64_t w = w0; w < w1; ++w) {
      float* p = scratch.data() + w * group * stride;
      for (int64_t item = w; item < items; item += slots) {
        const int64_t t = item / a.h_kv, hk = item % a.h_kv, n = a.past + t + 1;
        for (int64_t g = 0; g < group; ++g) {
          float* e = p + g * stride;
          const float* q = a.q + (t * a.h + hk * group + g) * a.d;
          const float mx = LaneScoresAvx512(q, k_blocks, hk, a.d, n, a.scale, e);
          const float inv = static_cast<float>(1.0 / ExpAndSum(e, n, mx));
          for (int64_t s = 0; s < n; ++s) e[s] *= inv;
        }
        LaneWeightedSumAvx512(p, stride, static_cast<int>(group), v_blocks, hk, a.d, n,
                              /*vec_dot_order=*/a.t == 1, a.out + (t * a.h + hk * group) * a.d,
                              a.d);
      }
    }
  });
}

}  // namespace

bool AttentionReadsTransposedBlocks(int64_t d, int64_t block_rows) {
  return d % 64 == 0 && block_rows == kLaneBlockKeys && HasAvx512Vnni();
}

absl::Status Attention(ThreadPool* pool, const AttentionArgs& a) {
  if (a.t <= 0 || a.h <= 0) return absl::OkStatus();
  const bool half = a.k_blocks_f16 != nullptr;
  if ((a.k_blocks != nullptr || half) && a.blocks_transposed) {
    if (AttentionReadsTransposedBlocks(a.d, a.block_rows)) {
      if (half) {
        LaneAttention(pool, a, a.k_blocks_f16, a.v_blocks_f16);
      } else {
        LaneAttention(pool, a, a.k_blocks, a.v_blocks);
      }
      return absl::OkStatus();
    }
    // No lane kernel for this shape or CPU: the rows gathered into a flat cache first.
    const int64_t keys = a.past + a.t, row = a.h_kv * a.d;
    thread_local std::vector<float> k, v;
    k.resize(static_cast<size_t>(keys * row));
    v.resize(k.size());
    for (int64_t s = 0; s < keys; ++s) {
      for (int64_t hk = 0; hk < a.h_kv; ++hk) {
        for (int64_t i = 0; i < a.d; ++i) {
          k[s * row + hk * a.d + i] = CacheAt(a, nullptr, a.k_blocks, a.k_blocks_f16, s, hk, i);
          v[s * row + hk * a.d + i] = CacheAt(a, nullptr, a.v_blocks, a.v_blocks_f16, s, hk, i);
        }
      }
    }
    AttentionArgs flat = a;
    flat.k = k.data();
    flat.v = v.data();
    flat.k_blocks = flat.v_blocks = nullptr;
    flat.k_blocks_f16 = flat.v_blocks_f16 = nullptr;
    flat.blocks_transposed = false;
    return Attention(pool, flat);
  }
  const int64_t keys = a.past + a.t;
  const int64_t stride = (keys + 15) / 16 * 16;
  // Prefill: V transposed per kv head, so that P*V reads keys contiguously. Only keys
  // [0, keys) of each row are written and read (the dots mask the rest).
  float* vt = nullptr;
  if (a.t > 1) {
    thread_local std::unique_ptr<float[]> vt_buf;
    thread_local size_t vt_size = 0;
    const auto vt_need = static_cast<size_t>(a.h_kv * a.d * stride);
    if (vt_size < vt_need) {
      vt_buf.reset(new float[vt_need]);
      vt_size = vt_need;
    }
    vt = vt_buf.get();
    constexpr int64_t kKeyBlock = 256;
    const int64_t key_blocks = (keys + kKeyBlock - 1) / kKeyBlock;
    ParallelFor(pool, a.h_kv * key_blocks, 1, [&](int64_t u0, int64_t u1, int) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t hk = u / key_blocks, s0 = (u % key_blocks) * kKeyBlock;
        TransposeV(a, hk, s0, std::min(keys, s0 + kKeyBlock), stride, vt);
      }
    });
  }
  // (t, h) items round-robin over the workers.
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t items = a.t * a.h;
  const int64_t slots = std::min<int64_t>(threads, items);
  const int64_t lanes_size = vt == nullptr ? 64 * a.d : 0;
  std::vector<float> scratch(slots * (stride + lanes_size));
  ParallelFor(pool, slots, 1, [&](int64_t w0, int64_t w1, int) {
    for (int64_t w = w0; w < w1; ++w) {
      float* e = scratch.data() + w * (stride + lanes_size);
      for (int64_t item = w; item < items; item += slots) {
        Head(a, item / a.h, item % a.h, vt, stride, e, e + stride);
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
