// Scratch and packing helpers shared by the blocked attention kernels (attention_backward.cc,
// attention_causal.cc). Only cpu/*.cc include this.
#ifndef ANVIL_KERNELS_CPU_ATTENTION_SCRATCH_H_
#define ANVIL_KERNELS_CPU_ATTENTION_SCRATCH_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace anvil::cpu {

inline int64_t RoundUp16(int64_t n) { return (n + 15) / 16 * 16; }

// dst [dp] = the d floats at src, then zeros; all zeros when src is null (a padding row).
inline void CopyPadded(float* dst, const float* src, int64_t d, int64_t dp) {
  if (src == nullptr) d = 0;
  if (d > 0) std::memcpy(dst, src, static_cast<size_t>(d) * sizeof(float));
  std::fill(dst + d, dst + dp, 0.0f);
}

// A grow-only float buffer owned by the calling thread (the pool's workers only write into
// disjoint parts of it during a call), one for both kernels: a thread runs one at a time.
// Contents are not initialized.
inline float* AttentionScratch(size_t floats) {
  static thread_local std::unique_ptr<float[]> buf;
  static thread_local size_t size = 0;
  if (size < floats) {
    buf.reset(new float[floats]);
    size = floats;
  }
  return buf.get();
}

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_ATTENTION_SCRATCH_H_
