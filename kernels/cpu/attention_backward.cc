// CPU AttentionBackward (layer_ops_backward.h): causal self-attention over one sequence, blocked
// over query rows. A work item is (query head h, block of kQueryBlock queries); it sees every
// key it needs, so it recomputes its rows' probabilities exactly (no separate log-sum-exp pass)
// and does the minimum work, five products of size rows x keys x D:
//   S = Q K^T, dP = dO V^T (small_gemm_avx2.h), P = softmax(scale * S), dS = P * (dP - Delta),
//   dQ = scale * dS K (the item owns these rows), dK += dS^T Q, dV += P^T dO.
// dK and dV are shared by all items, so each pool slot accumulates them into private [Hkv][T][D]
// buffers (covering only the keys it touched) that one final pass sums in slot order. K, K^T and
// V^T are first packed per kv head with D padded to 16 (zeros), so every product runs on 16-wide
// tiles. Scratch is a grow-only buffer of the calling thread (~3.7 MB per pool slot at T = 2048,
// D = 64, Hkv = 3). Not bit-identical to the reference (float sums, ggml's exp): atol + rtol.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/attention_scratch.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/small_gemm_avx2.h"
#include "kernels/cpu/softmax_avx2.h"

namespace anvil::cpu {
namespace {

constexpr int64_t kQueryBlock = 32;  // query rows per work item
constexpr int64_t kPackKeys = 64;    // keys per packing unit

// The layout of one call's scratch: packed K/V per kv head, then one region per pool slot.
struct Layout {
  int64_t t = 0, tp = 0, dp = 0;  // T, T and D rounded up to 16
  // Row stride of the [.][Tp] matrices (K^T, V^T, P, dS): Tp + 16, never a multiple of 4 KB, so
  // that the 64 rows a product walks down do not all fall into one L1 set.
  int64_t ld = 0;
  int64_t head = 0;        // floats of one packed [Tp][Dp] matrix
  int64_t head_t = 0;      // floats of one [Dp][ld] matrix
  int64_t slot = 0;        // floats per slot region
  float* kp = nullptr;     // [Hkv][Tp][Dp]: K, zero-padded
  float* kt = nullptr;     // [Hkv][Dp][ld]: K transposed
  float* vt = nullptr;     // [Hkv][Dp][ld]: V transposed
  float* slots = nullptr;  // [slots][slot]
};

// One slot's region: Q and dO rows of the item, dQ before scaling, P and dS, and the private
// dK/dV accumulators.
struct SlotBuffers {
  float* q;     // [kQueryBlock][Dp]
  float* dout;  // [kQueryBlock][Dp]
  float* dq;    // [kQueryBlock][Dp]
  float* p;     // [kQueryBlock][ld]: S, then P
  float* ds;    // [kQueryBlock][ld]: dP, then dS
  float* dk;    // [Hkv][Tp][Dp]
  float* dv;    // [Hkv][Tp][Dp]
};

int64_t SlotFloats(int64_t h_kv, int64_t tp, int64_t ld, int64_t dp) {
  return 3 * kQueryBlock * dp + 2 * kQueryBlock * ld + 2 * h_kv * tp * dp;
}

SlotBuffers SlotAt(const Layout& l, int64_t h_kv, int64_t s) {
  float* base = l.slots + s * l.slot;
  SlotBuffers b;
  b.q = base;
  b.dout = b.q + kQueryBlock * l.dp;
  b.dq = b.dout + kQueryBlock * l.dp;
  b.p = b.dq + kQueryBlock * l.dp;
  b.ds = b.p + kQueryBlock * l.ld;
  b.dk = b.ds + kQueryBlock * l.ld;
  b.dv = b.dk + h_kv * l.tp * l.dp;
  return b;
}

// Packs keys [s0, s1) of kv head hk into kp, kt and vt, zeros past T and past D included.
void PackKeys(const AttentionBackwardArgs& a, const Layout& l, int64_t hk, int64_t s0, int64_t s1) {
  float* kp = l.kp + hk * l.head;
  float* kt = l.kt + hk * l.head_t;
  float* vt = l.vt + hk * l.head_t;
  for (int64_t s = s0; s < s1; ++s) {
    CopyPadded(kp + s * l.dp, s < a.t ? a.k + (s * a.h_kv + hk) * a.d : nullptr, a.d, l.dp);
  }
  for (int64_t i = 0; i < l.dp; ++i) {
    for (int64_t s = s0; s < s1; ++s) {
      const bool real = s < a.t && i < a.d;
      kt[i * l.ld + s] = real ? a.k[(s * a.h_kv + hk) * a.d + i] : 0.0f;
      vt[i * l.ld + s] = real ? a.v[(s * a.h_kv + hk) * a.d + i] : 0.0f;
    }
  }
}

// Copies `rows` rows of head h from src ([T][H][D]) starting at token i0 into dst ([rows][Dp]),
// zero-padding each row past D.
void PackRows(const float* src, int64_t i0, int64_t rows, int64_t h, const AttentionBackwardArgs& a,
              int64_t dp, float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    CopyPadded(dst + r * dp, src + ((i0 + r) * a.h + h) * a.d, a.d, dp);
  }
}

float Dot(const float* x, const float* y, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc);
  }
  float sum = HorizontalSum(acc);
  for (; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

// One query row of the item: p holds S (keys [0, np)), ds holds dP. Afterwards p holds P
// (zero for keys past the causal limit `n_keys`) and ds holds dS = P * (dP - delta).
void SoftmaxAndDs(float* p, float* ds, int64_t n_keys, int64_t np, float scale, float delta) {
  const float mx = RowMaxAvx2(p, n_keys, scale);
  const float inv = static_cast<float>(1.0 / RowExpSumAvx2<true>(p, n_keys, scale, mx, p));
  std::fill(p + n_keys, p + np, 0.0f);
  const __m256 iv = _mm256_set1_ps(inv), dv = _mm256_set1_ps(delta);
  for (int64_t j = 0; j < np; j += 8) {  // np is a multiple of 16
    const __m256 pj = _mm256_mul_ps(_mm256_loadu_ps(p + j), iv);
    _mm256_storeu_ps(p + j, pj);
    _mm256_storeu_ps(ds + j, _mm256_mul_ps(pj, _mm256_sub_ps(_mm256_loadu_ps(ds + j), dv)));
  }
}

// Work item (query block qb, head h) on slot buffers b; ext[hk] counts the accumulator rows of
// kv head hk this slot has written so far. A slot's items come in non-increasing qb, so its
// first item of a kv head writes (rather than adds) every row the later ones add to: the
// accumulators need no zeroing pass.
void Item(const AttentionBackwardArgs& a, const Layout& l, int64_t qb, int64_t h,
          const SlotBuffers& b, int64_t* ext) {
  const int64_t hk = h / (a.h / a.h_kv);
  const int64_t i0 = qb * kQueryBlock, i1 = std::min(a.t, i0 + kQueryBlock), rows = i1 - i0;
  const int64_t np = RoundUp16(i1);  // keys [0, i1) padded; P and dS are zero past the limit
  const int64_t dp = l.dp, ld = l.ld;
  float* dk = b.dk + hk * l.head;
  float* dv = b.dv + hk * l.head;
  const bool first = ext[hk] == 0;
  if (!first && ext[hk] < np) {  // not reached with AttentionBackward's dealing order
    std::fill(dk + ext[hk] * dp, dk + np * dp, 0.0f);
    std::fill(dv + ext[hk] * dp, dv + np * dp, 0.0f);
  }
  ext[hk] = std::max(ext[hk], np);
  PackRows(a.q, i0, rows, h, a, dp, b.q);
  PackRows(a.dout, i0, rows, h, a, dp, b.dout);
  const float* kt = l.kt + hk * l.head_t;
  const float* vt = l.vt + hk * l.head_t;
  SmallGemm({rows, np, dp, b.q, dp, 1, kt, ld, b.p, ld, false});      // S = Q K^T
  SmallGemm({rows, np, dp, b.dout, dp, 1, vt, ld, b.ds, ld, false});  // dP = dO V^T
  for (int64_t r = 0; r < rows; ++r) {
    const float* dout = a.dout + ((i0 + r) * a.h + h) * a.d;
    const float* out = a.out + ((i0 + r) * a.h + h) * a.d;
    SoftmaxAndDs(b.p + r * ld, b.ds + r * ld, i0 + r + 1, np, a.scale, Dot(dout, out, a.d));
  }
  SmallGemm({rows, dp, np, b.ds, ld, 1, l.kp + hk * l.head, dp, b.dq, dp, false});  // dS K
  SmallGemm({np, dp, rows, b.ds, 1, ld, b.q, dp, dk, dp, !first});                  // dS^T Q
  SmallGemm({np, dp, rows, b.p, 1, ld, b.dout, dp, dv, dp, !first});                // P^T dO
  const __m256 sv = _mm256_set1_ps(a.scale);
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = a.dq + ((i0 + r) * a.h + h) * a.d;
    const float* src = b.dq + r * dp;
    int64_t i = 0;
    for (; i + 8 <= a.d; i += 8)
      _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_loadu_ps(src + i), sv));
    for (; i < a.d; ++i) dst[i] = src[i] * a.scale;
  }
}

// dk/dv row s of kv head hk: the sum over slots (in slot order) of the rows they touched.
void ReduceRow(const AttentionBackwardArgs& a, const Layout& l, int64_t n_slots,
               const std::vector<int64_t>& ext, int64_t hk, int64_t s, float* sum_k, float* sum_v) {
  std::fill(sum_k, sum_k + l.dp, 0.0f);
  std::fill(sum_v, sum_v + l.dp, 0.0f);
  for (int64_t w = 0; w < n_slots; ++w) {
    if (ext[w * a.h_kv + hk] <= s) continue;
    const SlotBuffers b = SlotAt(l, a.h_kv, w);
    const float* rk = b.dk + hk * l.head + s * l.dp;
    const float* rv = b.dv + hk * l.head + s * l.dp;
    for (int64_t i = 0; i < l.dp; i += 8) {
      _mm256_storeu_ps(sum_k + i,
                       _mm256_add_ps(_mm256_loadu_ps(sum_k + i), _mm256_loadu_ps(rk + i)));
      _mm256_storeu_ps(sum_v + i,
                       _mm256_add_ps(_mm256_loadu_ps(sum_v + i), _mm256_loadu_ps(rv + i)));
    }
  }
  float* dk = a.dk + (s * a.h_kv + hk) * a.d;
  float* dv = a.dv + (s * a.h_kv + hk) * a.d;
  for (int64_t i = 0; i < a.d; ++i) {
    dk[i] = sum_k[i] * a.scale;
    dv[i] = sum_v[i];
  }
}

}  // namespace

absl::Status AttentionBackward(ThreadPool* pool, const AttentionBackwardArgs& a) {
  if (a.t <= 0) return absl::OkStatus();
  Layout l;
  l.t = a.t;
  l.tp = RoundUp16(a.t);
  l.dp = RoundUp16(a.d);
  l.ld = l.tp + 16;
  l.head = l.tp * l.dp;
  l.head_t = l.dp * l.ld;
  l.slot = SlotFloats(a.h_kv, l.tp, l.ld, l.dp);
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t n_qb = (a.t + kQueryBlock - 1) / kQueryBlock;
  const int64_t items = n_qb * a.h;
  const int64_t n_slots = std::min<int64_t>(threads, items);
  float* scratch =
      AttentionScratch(static_cast<size_t>(a.h_kv * (l.head + 2 * l.head_t) + n_slots * l.slot));
  l.kp = scratch;
  l.kt = l.kp + a.h_kv * l.head;
  l.vt = l.kt + a.h_kv * l.head_t;
  l.slots = l.vt + a.h_kv * l.head_t;

  const int64_t pack_blocks = (l.tp + kPackKeys - 1) / kPackKeys;
  ParallelFor(pool, a.h_kv * pack_blocks, 1, [&](int64_t u0, int64_t u1, int) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t hk = u / pack_blocks, s0 = (u % pack_blocks) * kPackKeys;
      PackKeys(a, l, hk, s0, std::min(l.tp, s0 + kPackKeys));
    }
  });

  // Items from the most expensive (last query block) down, dealt round-robin to the slots. With
  // enough slots, each kv head gets its own equal group of slots (dropping at most a tenth of
  // them), so that a slot accumulates into one kv head's dK/dV only and the final pass reads
  // Hkv times less.
  int64_t n_groups = 1, used = n_slots;
  if (a.h_kv > 1 && n_slots >= a.h_kv && n_slots % a.h_kv * 10 <= n_slots) {
    n_groups = a.h_kv;
    used = n_slots / a.h_kv * a.h_kv;
  }
  const int64_t group_heads = a.h / n_groups, group_slots = used / n_groups;
  const int64_t group_items = n_qb * group_heads;
  std::vector<int64_t> ext(static_cast<size_t>(used * a.h_kv), 0);
  ParallelFor(pool, used, 1, [&](int64_t w0, int64_t w1, int) {
    for (int64_t w = w0; w < w1; ++w) {
      const SlotBuffers b = SlotAt(l, a.h_kv, w);
      const int64_t g = w % n_groups;
      for (int64_t u = w / n_groups; u < group_items; u += group_slots) {
        Item(a, l, n_qb - 1 - u / group_heads, g * group_heads + u % group_heads, b,
             ext.data() + w * a.h_kv);
      }
    }
  });

  ParallelFor(pool, a.h_kv * a.t, 64, [&](int64_t u0, int64_t u1, int) {
    std::vector<float> sums(static_cast<size_t>(2 * l.dp));
    for (int64_t u = u0; u < u1; ++u) {
      ReduceRow(a, l, used, ext, u / a.t, u % a.t, sums.data(), sums.data() + l.dp);
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
