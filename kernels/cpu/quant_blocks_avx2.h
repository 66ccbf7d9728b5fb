// Inline helpers shared by the quantized matmul kernels: unpacking 4-bit blocks to bytes in
// element order and the integer block dot products whose 8 int32 lanes each hold the exact sum
// of 4 consecutive elements' products (the lane layout llama.cpp's x86 kernels use).
#ifndef ANVIL_KERNELS_CPU_QUANT_BLOCKS_AVX2_H_
#define ANVIL_KERNELS_CPU_QUANT_BLOCKS_AVX2_H_

#include <immintrin.h>

#include <cstdint>

namespace anvil::cpu {

// 16 bytes of nibbles -> 32 bytes in element order (low nibbles are elements 0..15, high
// nibbles 16..31), values 0..15.
inline __m256i Unpack4(const uint8_t* qs) {
  const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i both =
      _mm256_inserti128_si256(_mm256_castsi128_si256(raw), _mm_srli_epi16(raw, 4), 1);
  return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

// Signed w times signed x. maddubs needs an unsigned operand, so |w| (w_abs) times x with w's
// sign moved onto it; pair sums are at most 2*128*127 and never saturate int16.
inline __m256i SignedDot(__m256i w, __m256i w_abs, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, _mm256_sign_epi8(x, w)),
                           _mm256_set1_epi16(1));
}
inline __m256i SignedDot(__m256i w, __m256i x) { return SignedDot(w, _mm256_sign_epi8(w, w), x); }

// Unsigned w (0..15) times signed x.
inline __m256i UnsignedDot(__m256i w, __m256i x) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1));
}

}  // namespace anvil::cpu

#endif  // ANVIL_KERNELS_CPU_QUANT_BLOCKS_AVX2_H_
