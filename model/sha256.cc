// SHA-256 (FIPS 180-4). The compression function has a portable version and, on x86-64 CPUs with
// the SHA extensions, a SHA-NI version (about 5x faster: a 1.6 GB checkpoint hashes in about a
// second instead of several). The choice is made once per process from CPUID.
#include "model/sha256.h"

#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace anvil {
namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

inline uint32_t Rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

#if defined(__x86_64__)
// State layout of the SHA instructions: one register holds (A,B,E,F), the other (C,D,G,H), each
// with A (resp. C) in the top lane. Each sha256rnds2 does two rounds and swaps their roles.
__attribute__((target("sha,sse4.1,ssse3"))) void BlocksShaNi(uint32_t state[8], const uint8_t* data,
                                                             size_t n_blocks) {
  // Byte order within each 32-bit word: the message is big-endian.
  const __m128i kBswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
  __m128i tmp = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state));       // a b c d
  __m128i cdgh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(state + 4));  // e f g h
  tmp = _mm_shuffle_epi32(tmp, 0xB1);                                           // b a d c
  cdgh = _mm_shuffle_epi32(cdgh, 0x1B);                                         // h g f e
  __m128i abef = _mm_alignr_epi8(tmp, cdgh, 8);                                 // f e b a
  cdgh = _mm_blend_epi16(cdgh, tmp, 0xF0);                                      // h g d c

  for (size_t blk = 0; blk < n_blocks; ++blk, data += 64) {
    const __m128i abef_saved = abef;
    const __m128i cdgh_saved = cdgh;
    __m128i w[4];  // ring of the last 16 schedule words, 4 per register
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      __m128i& cur = w[g & 3];
      if (g < 4) {
        cur = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(data + 16 * g)),
                               kBswap);
      } else {
        // W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16] for t = 4g .. 4g+3.
        const __m128i prev1 = w[(g - 1) & 3];
        const __m128i prev2 = w[(g - 2) & 3];
        __m128i x = _mm_sha256msg1_epu32(cur, w[(g - 3) & 3]);
        x = _mm_add_epi32(x, _mm_alignr_epi8(prev1, prev2, 4));
        cur = _mm_sha256msg2_epu32(x, prev1);
      }
      __m128i wk =
          _mm_add_epi32(cur, _mm_loadu_si128(reinterpret_cast<const __m128i*>(kK + 4 * g)));
      cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);
      wk = _mm_shuffle_epi32(wk, 0x0E);
      abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);
    }
    abef = _mm_add_epi32(abef, abef_saved);
    cdgh = _mm_add_epi32(cdgh, cdgh_saved);
  }

  tmp = _mm_shuffle_epi32(abef, 0x1B);      // a b e f
  cdgh = _mm_shuffle_epi32(cdgh, 0xB1);     // g h c d
  abef = _mm_blend_epi16(tmp, cdgh, 0xF0);  // a b c d
  cdgh = _mm_alignr_epi8(cdgh, tmp, 8);     // e f g h
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state), abef);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(state + 4), cdgh);
}

bool CpuHasSha() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool sha = (b >> 29) & 1u;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = (c >> 9) & 1u;
  const bool sse41 = (c >> 19) & 1u;
  return sha && ssse3 && sse41;
}
#endif

using BlocksFn = void (*)(uint32_t[8], const uint8_t*, size_t);

BlocksFn ChooseBlocks() {
#if defined(__x86_64__)
  if (CpuHasSha()) return BlocksShaNi;
#endif
  return internal::Sha256BlocksScalar;
}

// A function-local static, so hashing during another file's static initialization is safe.
BlocksFn Blocks() {
  static const BlocksFn fn = ChooseBlocks();
  return fn;
}

}  // namespace

namespace internal {

void Sha256BlocksScalar(uint32_t state[8], const uint8_t* data, size_t n_blocks) {
  for (size_t blk = 0; blk < n_blocks; ++blk, data += 64) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i) {
      const uint8_t* p = data + 4 * i;
      w[i] = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
    }
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = Rotr(w[i - 15], 7) ^ Rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = Rotr(w[i - 2], 17) ^ Rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 =
          h + (Rotr(e, 6) ^ Rotr(e, 11) ^ Rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
      const uint32_t t2 = (Rotr(a, 2) ^ Rotr(a, 13) ^ Rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
  }
}

}  // namespace internal

bool Sha256::UsesShaExtensions() { return Blocks() != internal::Sha256BlocksScalar; }

void Sha256::Reset() {
  std::memcpy(h_, kInit, sizeof(h_));
  buf_len_ = 0;
  total_ = 0;
}

void Sha256::Update(const void* data, size_t n) {
  if (n == 0) return;  // data may be null then (an empty vector's data())
  const auto* p = static_cast<const uint8_t*>(data);
  total_ += n;
  if (buf_len_ > 0) {
    const size_t take = n < 64 - buf_len_ ? n : 64 - buf_len_;
    std::memcpy(buf_ + buf_len_, p, take);
    buf_len_ += take;
    p += take;
    n -= take;
    if (buf_len_ < 64) return;
    Blocks()(h_, buf_, 1);
    buf_len_ = 0;
  }
  if (n >= 64) {
    Blocks()(h_, p, n / 64);
    p += n / 64 * 64;
    n %= 64;
  }
  if (n > 0) {
    std::memcpy(buf_, p, n);
    buf_len_ = n;
  }
}

Sha256::Digest Sha256::Finish() {
  const uint64_t bits = total_ * 8;
  uint8_t pad[72] = {0x80};
  // 0x80, zeros up to 56 mod 64, then the 64-bit big-endian bit length.
  const size_t pad_len = (buf_len_ < 56 ? 56 : 120) - buf_len_;
  for (int i = 0; i < 8; ++i) pad[pad_len + i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
  Update(pad, pad_len + 8);
  Digest out;
  for (int i = 0; i < 8; ++i) {
    out[4 * i] = static_cast<uint8_t>(h_[i] >> 24);
    out[4 * i + 1] = static_cast<uint8_t>(h_[i] >> 16);
    out[4 * i + 2] = static_cast<uint8_t>(h_[i] >> 8);
    out[4 * i + 3] = static_cast<uint8_t>(h_[i]);
  }
  Reset();
  return out;
}

std::string Sha256::FinishHex() { return DigestHex(Finish()); }

std::string DigestHex(const Sha256::Digest& d) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(64, '0');
  for (size_t i = 0; i < d.size(); ++i) {
    s[2 * i] = kHex[d[i] >> 4];
    s[2 * i + 1] = kHex[d[i] & 15];
  }
  return s;
}

std::string Sha256Hex(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishHex();
}

}  // namespace anvil
