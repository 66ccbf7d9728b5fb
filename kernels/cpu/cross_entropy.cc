// CPU per-row cross-entropy with ignored rows (kernels/cross_entropy.h): AVX2, rows split
// across the pool. Dispatch has checked the shape and that every target is below V. The loss
// is formed in double from the row max, the target's logit and log(sum) as in the reference
// (kernels/reference/cross_entropy.cc), so it matches within a few ulps of lse plus a small
// atol. An ignored row whose lse is not wanted (lse == nullptr) is skipped entirely.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/softmax_avx2.h"

namespace anvil::cpu {
namespace {

constexpr int64_t kChunkElems = 16384;  // elements per pool chunk, as in softmax.cc

}  // namespace

absl::Status CrossEntropy(ThreadPool* pool, const CrossEntropyArgs& a) {
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkElems / a.v);
  ParallelFor(pool, a.t, rows_per_chunk, [&](int64_t t0, int64_t t1, int) {
    for (int64_t t = t0; t < t1; ++t) {
      const int32_t target = a.targets[t];
      if (target < 0 && a.lse == nullptr) {
        a.loss[t] = 0.0f;
        continue;
      }
      const float* logits = a.logits + t * a.v;  // [V]
      const float mx = RowMaxAvx2(logits, a.v, 1.0f);
      const double log_sum = std::log(RowExpSumAvx2<false>(logits, a.v, 1.0f, mx, nullptr));
      if (a.lse != nullptr) a.lse[t] = static_cast<float>(static_cast<double>(mx) + log_sum);
      a.loss[t] = target < 0
                      ? 0.0f
                      : static_cast<float>((static_cast<double>(mx) - logits[target]) + log_sum);
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
