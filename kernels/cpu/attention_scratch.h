// Scratch shared by the blocked attention kernels (attention_backward.cc, attention_causal.cc).
// Only cpu/*.cc include this.
#ifndef ANVIL_KERNELS_CPU_ATTENTION_SCRATCH_H_
#define ANVIL_KERNELS_CPU_ATTENTION_SCRATCH_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace anvil::cpu {

inline int64_t RoundUp16(int64_t n) { return (n + 15) / 16 * 16; }

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
