// The summation orders of llama.cpp's F32 dot products (ggml-cpu built for AVX512), shared by
// the reference matmul and attention so that their results are bit-identical to llama.cpp's.
// Only the order of float operations is modelled here; which kernel llama.cpp picks for a
// given product is decided by the callers (see their comments).
#ifndef ANVIL_KERNELS_REFERENCE_GGML_SUM_ORDER_H_
#define ANVIL_KERNELS_REFERENCE_GGML_SUM_ORDER_H_

#include <algorithm>
#include <cmath>
#include <cstdint>

// The reference emulates llama.cpp's fused multiply-adds with std::fma, which is exact on every
// CPU but a libm call where the compiler may not assume an FMA instruction. Functions with many
// of them are compiled twice (target_clones, picked once at load time): CPUs with FMA run them
// inline, others call libm. Both give the same bits; -ffp-contract=off still holds in both.
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define ANVIL_FMA_CLONES __attribute__((target_clones("fma", "default")))
#endif
#endif
#ifndef ANVIL_FMA_CLONES
#define ANVIL_FMA_CLONES
#endif

namespace anvil::reference {

// ggml's F32 vector width on AVX512: 16 float lanes.
inline constexpr int kGgmlLanes = 16;

// Sum of 16 lanes in the order gcc expands _mm512_reduce_add_ps: fold the upper 8 lanes onto
// the lower 8, then 4 onto 4, then lanes {2,3} onto {0,1}, then lane 1 onto lane 0.
inline float ReduceLanes16(const float* l) {
  float t[8], u[4];
  for (int i = 0; i < 8; ++i) t[i] = l[i + 8] + l[i];
  for (int i = 0; i < 4; ++i) u[i] = t[i + 4] + t[i];
  return (u[0] + u[2]) + (u[1] + u[3]);
}

// An F32 dot product with the lane structure of ggml's two F32 kernels:
//  * ggml_vec_dot_f32 (kVecDot): 4 accumulators x 16 lanes; element i goes to accumulator
//    (i % 64) / 16, lane i % 16, acc = fma(x, y, acc) in increasing i; then acc0 += acc2,
//    acc1 += acc3, acc0 += acc1 (lane-wise) and ReduceLanes16(acc0). Bit-exact for
//    n % 64 == 0 (ggml adds leftover elements in a scalar loop that gcc vectorizes; that tail
//    is not reproduced).
//  * llamafile's tinyBLAS<16, __m512> (kGemm): one accumulator of 16 lanes, element i in lane
//    i % 16, acc = fma(x, y, acc) in increasing i, then ReduceLanes16.
// Elements that are zero in llama.cpp's (padded) operands may be left out: fma(0, y, acc) is acc.
enum class GgmlF32Order { kVecDot, kGemm };

// x, y: [n]. Always inlined, so that ANVIL_FMA_CLONES callers run it with FMA instructions.
[[gnu::always_inline]] inline float GgmlDotF32(const float* x, const float* y, int64_t n,
                                               GgmlF32Order order) {
  const int n_acc = order == GgmlF32Order::kVecDot ? 4 : 1;
  float acc[4][kGgmlLanes] = {};
  for (int64_t i0 = 0; i0 < n; i0 += kGgmlLanes) {
    float* a = acc[(i0 / kGgmlLanes) % n_acc];
    const int64_t len = std::min<int64_t>(kGgmlLanes, n - i0);
    for (int64_t l = 0; l < len; ++l) a[l] = std::fma(x[i0 + l], y[i0 + l], a[l]);
  }
  float lanes[kGgmlLanes];
  for (int l = 0; l < kGgmlLanes; ++l) {
    lanes[l] = n_acc == 4 ? (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]) : acc[0][l];
  }
  return ReduceLanes16(lanes);
}

}  // namespace anvil::reference

#endif  // ANVIL_KERNELS_REFERENCE_GGML_SUM_ORDER_H_
