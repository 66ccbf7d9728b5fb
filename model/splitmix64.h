// SplitMix64 (Steele, Lea, Flood 2014): the one small PRNG the project uses wherever results
// must be reproducible from a seed on every platform and standard library (sampling, BPE-dropout,
// the tiny test model's weights, the trainer's data order). Fully specified by its arithmetic.
#ifndef ANVIL_MODEL_SPLITMIX64_H_
#define ANVIL_MODEL_SPLITMIX64_H_

#include <cstdint>

namespace anvil {

// Advances `*state` and returns the next 64 random bits.
inline uint64_t SplitMix64Next(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A uniform double in [0, 1) from the top 53 bits.
inline double UnitInterval(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

}  // namespace anvil

#endif  // ANVIL_MODEL_SPLITMIX64_H_
