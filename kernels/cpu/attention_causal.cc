// CPU CausalAttention (layer_ops.h): the training forward's causal self-attention over one
// whole sequence, blocked like AttentionBackward (attention_backward.cc). A work item is (query
// head h, block of kQueryBlock queries); it sees every key it needs and runs three steps on
// 16-wide tiles (small_gemm_avx2.h):
//   S = Q K^T, P = softmax(scale * S) over the causal keys (the row reductions of
//   softmax_avx2.h, which AttentionBackward also uses to recompute P), O = P V.
// K^T and V are first packed per kv head with D and T padded to 16 (zeros). Items are dealt
// from the most expensive (last query block) down, round-robin, so the threads get equal work.
// Not bit-identical to Attention's per-key order (float sums, ggml's exp): atol + rtol.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/attention_scratch.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/small_gemm_avx2.h"
#include "kernels/cpu/softmax_avx2.h"

namespace anvil::cpu {
namespace {

constexpr int64_t kQueryBlock = 32;  // query rows per work item

struct Layout {
  int64_t tp = 0, dp = 0;  // T and D rounded up to 16
  // Row stride of K^T and P: Tp + 16, never a multiple of 4 KB (the rows a product walks down
  // would otherwise share one L1 set).
  int64_t ld = 0;
  float* kt = nullptr;     // [Hkv][Dp][ld]: K transposed
  float* vp = nullptr;     // [Hkv][Tp][Dp]: V, zero-padded
  float* slots = nullptr;  // per slot: Q rows [kQueryBlock][Dp], P [kQueryBlock][ld], O
  int64_t slot = 0;
};

// Packs kv head hk: K^T and V, zeros past T and D.
void PackHead(const AttentionArgs& a, const Layout& l, int64_t hk) {
  float* kt = l.kt + hk * l.dp * l.ld;
  float* vp = l.vp + hk * l.tp * l.dp;
  for (int64_t s = 0; s < l.tp; ++s) {
    CopyPadded(vp + s * l.dp, s < a.t ? a.v + (s * a.h_kv + hk) * a.d : nullptr, a.d, l.dp);
  }
  for (int64_t i = 0; i < l.dp; ++i) {
    float* row = kt + i * l.ld;
    for (int64_t s = 0; s < l.tp; ++s) {
      row[s] = s < a.t && i < a.d ? a.k[(s * a.h_kv + hk) * a.d + i] : 0.0f;
    }
  }
}

// Query block qb of head h, on one slot's buffers.
void Item(const AttentionArgs& a, const Layout& l, int64_t qb, int64_t h, float* slot) {
  const int64_t hk = h / (a.h / a.h_kv);
  const int64_t i0 = qb * kQueryBlock, i1 = std::min(a.t, i0 + kQueryBlock), rows = i1 - i0;
  const int64_t np = RoundUp16(i1);  // keys [0, i1), padded; P is zero past each row's limit
  const int64_t dp = l.dp, ld = l.ld;
  float* q = slot;
  float* p = q + kQueryBlock * dp;
  float* o = p + kQueryBlock * ld;
  for (int64_t r = 0; r < rows; ++r) {
    CopyPadded(q + r * dp, a.q + ((i0 + r) * a.h + h) * a.d, a.d, dp);
  }
  SmallGemm({rows, np, dp, q, dp, 1, l.kt + hk * dp * ld, ld, p, ld, false});  // S = Q K^T
  for (int64_t r = 0; r < rows; ++r) {
    float* pr = p + r * ld;
    const int64_t n_keys = i0 + r + 1;
    const float mx = RowMaxAvx2(pr, n_keys, a.scale);
    const float inv = static_cast<float>(1.0 / RowExpSumAvx2<true>(pr, n_keys, a.scale, mx, pr));
    std::fill(pr + n_keys, pr + np, 0.0f);
    const __m256 iv = _mm256_set1_ps(inv);
    for (int64_t j = 0; j < np; j += 8) {  // np is a multiple of 16
      _mm256_storeu_ps(pr + j, _mm256_mul_ps(_mm256_loadu_ps(pr + j), iv));
    }
  }
  SmallGemm({rows, dp, np, p, ld, 1, l.vp + hk * l.tp * dp, dp, o, dp, false});  // O = P V
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(a.out + ((i0 + r) * a.h + h) * a.d, o + r * dp, a.d * sizeof(float));
  }
}

}  // namespace

absl::Status CausalAttention(ThreadPool* pool, const AttentionArgs& a) {
  if (a.t <= 0) return absl::OkStatus();
  Layout l;
  l.tp = RoundUp16(a.t);
  l.dp = RoundUp16(a.d);
  l.ld = l.tp + 16;
  l.slot = kQueryBlock * (2 * l.dp + l.ld);
  const int threads = pool != nullptr ? pool->num_threads() : 1;
  const int64_t n_qb = (a.t + kQueryBlock - 1) / kQueryBlock;
  const int64_t items = n_qb * a.h;
  const int64_t n_slots = std::min<int64_t>(threads, items);
  float* scratch = AttentionScratch(
      static_cast<size_t>(a.h_kv * (l.dp * l.ld + l.tp * l.dp) + n_slots * l.slot));
  l.kt = scratch;
  l.vp = l.kt + a.h_kv * l.dp * l.ld;
  l.slots = l.vp + a.h_kv * l.tp * l.dp;
  ParallelFor(pool, a.h_kv, 1, [&](int64_t h0, int64_t h1, int) {
    for (int64_t hk = h0; hk < h1; ++hk) PackHead(a, l, hk);
  });
  ParallelFor(pool, n_slots, 1, [&](int64_t w0, int64_t w1, int) {
    for (int64_t w = w0; w < w1; ++w) {
      for (int64_t u = w; u < items; u += n_slots) {
        Item(a, l, n_qb - 1 - u / a.h, u % a.h, l.slots + w * l.slot);
      }
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
