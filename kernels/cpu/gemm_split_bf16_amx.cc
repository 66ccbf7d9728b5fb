// SplitBf16Gemm (gemm_split_bf16.h): fp32 GEMM as six bf16 part products on AMX tiles.
//
// Layout. Both operands are split and packed into 1 KB tiles, three per 16 x 32 piece (one per
// part): A as [16 rows][32 k] bf16, B in the pair ("VNNI") layout TDPBF16PS wants, [16 k
// pairs][16 columns][2]. B is packed once per call for all of K and N (the pool splits it along
// B's rows in memory); each thread packs its rows of A per block of up to 256 rows x 768 k
// (1.2 MB), which then stays in L2 while every 32-column panel of B passes over it. The
// micro-kernel keeps a 32 x 32 block of C in the four accumulator tiles (A in tiles 4-5, B in
// 6-7) over the k block: it starts from C itself when C = op(A) op(B) (+ C) and the block is
// whole, else from zero through a scratch block that is then scaled into C.
// Packing reads each operand along its rows in memory (pieces outer or k outer), and the two
// transposed cases (A^T, B^T) transpose 16 x 16 pairs in registers.
//
// Why tiles: TDPBF16PS does 16 x 16 x 32 multiply-adds in 16 cycles, 512 per cycle per core
// against 32 for AVX-512 FMA; six products per fp32 product leave 85 per cycle. Measured on the
// dev VM (2 threads, M=1024, N=1536, K=576): ~400-550 GFLOP/s against OpenBLAS's ~300.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>

#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AMX_BF16__)
#error "gemm_split_bf16_amx.cc must be compiled with -mavx512f -mavx512bw -mamx-tile -mamx-bf16"
#endif

#include "absl/strings/str_cat.h"
#include "kernels/cpu/amx_tiles.h"
#include "kernels/cpu/gemm_split_bf16.h"
#include "kernels/cpu/matmul_kernels.h"

namespace anvil::cpu {
namespace {

constexpr int64_t kChunk = 32;        // k per tile row
constexpr int64_t kTile = 512;        // bf16 per tile (16 x 32)
constexpr int64_t kPartTiles = 3 * kTile;  // one 16 x 32 piece: its three parts
constexpr int64_t kMaxKChunks = 24;   // chunks per packed block of A (k <= 768)
constexpr int64_t kMBlock = 256;      // rows per packed block of A (at most 1.2 MB packed)
// Below this many multiply-adds, splitting costs more than the tiles save.
constexpr int64_t kMinMacs = int64_t{1} << 22;

const AmxTileConfig& GemmTiles() {
  static const AmxTileConfig config = [] {
    AmxTileConfig c;
    for (int t = 0; t < 8; ++t) c.colsb[t] = 64, c.rows[t] = 16;
    return c;
  }();
  return config;
}

// 64-byte aligned bf16 storage of the calling thread that only grows; nullptr when the
// allocation fails (the old storage is kept).
struct Bf16Buffer {
  struct Free {
    void operator()(uint16_t* p) const { std::free(p); }
  };
  std::unique_ptr<uint16_t, Free> data;
  int64_t size = 0;
  uint16_t* Get(int64_t n) {
    if (n > size) {
      const auto bytes = static_cast<size_t>((n * 2 + 63) / 64 * 64);
      auto* p = static_cast<uint16_t*>(std::aligned_alloc(64, bytes));
      if (p == nullptr) return nullptr;
      data.reset(p);
      size = n;
    }
    return data.get();
  }
};

// x's bits rounded to the nearest bf16 (ties to even), low 16 bits zero.
inline __attribute__((always_inline)) __m512i RoundToBf16(__m512i x) {
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF)));
  return _mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
}

// 16 floats as three bf16 parts (each in the low half of a 32-bit lane), x = p0 + p1 + p2
// exactly: p0 = bf16(x), p1 = bf16(x - p0), and x - p0 - p1 has at most 8 significant bits.
struct Parts {
  __m512i p[3];
};
inline __attribute__((always_inline)) Parts Split(__m512 x) {
  const __m512i h0 = RoundToBf16(_mm512_castps_si512(x));
  const __m512 r1 = _mm512_sub_ps(x, _mm512_castsi512_ps(h0));
  const __m512i h1 = RoundToBf16(_mm512_castps_si512(r1));
  const __m512 r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(h1));
  return {{_mm512_srli_epi32(h0, 16), _mm512_srli_epi32(h1, 16),
           _mm512_srli_epi32(_mm512_castps_si512(r2), 16)}};
}

inline __mmask16 FirstLanes(int64_t n) {
  if (n >= 16) return 0xFFFF;
  return n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1);
}

// Three tiles at dst (one per part), line i = the 32 floats from src + i*stride (k along the
// line): lines >= lines_valid and k >= k_valid are zero.
void PackLines(const float* src, int64_t stride, int64_t lines_valid, int64_t k_valid,
               uint16_t* dst) {
  const __mmask16 m0 = FirstLanes(k_valid), m1 = FirstLanes(k_valid - 16);
  for (int64_t i = 0; i < 16; ++i) {
    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    if (i < lines_valid) {
      lo = _mm512_maskz_loadu_ps(m0, src + i * stride);
      hi = _mm512_maskz_loadu_ps(m1, src + i * stride + 16);
    }
    const Parts a = Split(lo), b = Split(hi);
    for (int p = 0; p < 3; ++p) {
      uint16_t* row = dst + p * kTile + i * kChunk;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row), _mm512_cvtepi32_epi16(a.p[p]));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(row + 16), _mm512_cvtepi32_epi16(b.p[p]));
    }
  }
}

// Three tiles at dst in pair layout: row j = for each of 16 lines, the pair (k = 2j, 2j+1),
// where k's 16 lines are the floats src + k*stride .. +15. Lines >= lines_valid and
// k >= k_valid are zero.
void PackPairs(const float* src, int64_t stride, int64_t lines_valid, int64_t k_valid,
               uint16_t* dst) {
  const __mmask16 m = FirstLanes(lines_valid);
  for (int64_t j = 0; j < 16; ++j) {
    const int64_t k = 2 * j;
    const __m512 zero = _mm512_setzero_ps();
    const __m512 x0 = k < k_valid ? _mm512_maskz_loadu_ps(m, src + k * stride) : zero;
    const __m512 x1 = k + 1 < k_valid ? _mm512_maskz_loadu_ps(m, src + (k + 1) * stride) : zero;
    const Parts a = Split(x0), b = Split(x1);
    for (int p = 0; p < 3; ++p) {
      _mm512_storeu_si512(dst + p * kTile + j * kChunk,
                          _mm512_or_si512(a.p[p], _mm512_slli_epi32(b.p[p], 16)));
    }
  }
}

// Transposes each of the three tiles at dst as a 16 x 16 matrix of 32-bit pairs: pairs within
// 128-bit lanes, then 64-bit halves, then the lanes themselves in two rounds.
void TransposePairs(uint16_t* dst) {
  for (int p = 0; p < 3; ++p) {
    auto* tile = reinterpret_cast<__m512i*>(dst + p * kTile);
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
      const __m512i r0 = _mm512_loadu_si512(tile + i), r1 = _mm512_loadu_si512(tile + i + 1);
      t[i] = _mm512_unpacklo_epi32(r0, r1);
      t[i + 1] = _mm512_unpackhi_epi32(r0, r1);
    }
    // u[4g + c], 128-bit lane L: column 4L + c of rows 4g..4g+3.
    for (int g = 0; g < 4; ++g) {
      const __m512i* q = t + 4 * g;
      u[4 * g + 0] = _mm512_unpacklo_epi64(q[0], q[2]);
      u[4 * g + 1] = _mm512_unpackhi_epi64(q[0], q[2]);
      u[4 * g + 2] = _mm512_unpacklo_epi64(q[1], q[3]);
      u[4 * g + 3] = _mm512_unpackhi_epi64(q[1], q[3]);
    }
    for (int c = 0; c < 4; ++c) {
      const __m512i v0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88);  // lanes 0, 2
      const __m512i w0 = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);  // lanes 1, 3
      const __m512i v1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
      const __m512i w1 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
      _mm512_storeu_si512(tile + c, _mm512_shuffle_i32x4(v0, v1, 0x88));
      _mm512_storeu_si512(tile + 8 + c, _mm512_shuffle_i32x4(v0, v1, 0xDD));
      _mm512_storeu_si512(tile + 4 + c, _mm512_shuffle_i32x4(w0, w1, 0x88));
      _mm512_storeu_si512(tile + 12 + c, _mm512_shuffle_i32x4(w0, w1, 0xDD));
    }
  }
}

// The tiles of op(A) rows [m0, m0+16) x k [k0, k0+32) (row-major [16 m][32 k]).
void PackA(const GemmArgs& g, int64_t m0, int64_t k0, uint16_t* dst) {
  const int64_t lines = g.m - m0, kv = std::min<int64_t>(kChunk, g.k - k0);
  if (!g.trans_a) {
    PackLines(g.a + m0 * g.lda + k0, g.lda, lines, kv, dst);
  } else {  // A is [K][M]: the pairs of rows k0.. give [k pair][m]; transpose to [m][k pair]
    PackPairs(g.a + k0 * g.lda + m0, g.lda, lines, kv, dst);
    TransposePairs(dst);
  }
}

// The tiles of op(B) k [k0, k0+32) x columns [n0, n0+16) in pair layout ([k pair][16 n][2]).
void PackB(const GemmArgs& g, int64_t n0, int64_t k0, uint16_t* dst) {
  const int64_t lines = g.n - n0, kv = std::min<int64_t>(kChunk, g.k - k0);
  if (!g.trans_b) {
    PackPairs(g.b + k0 * g.ldb + n0, g.ldb, lines, kv, dst);
  } else {  // B is [N][K]: rows n give [n][k pair]; transpose to [k pair][n]
    PackLines(g.b + n0 * g.ldb + k0, g.ldb, lines, kv, dst);
    TransposePairs(dst);
  }
}

// fn(p, c) for every 16-line piece p < pieces and chunk c < chunks: pieces outer when
// `pieces_outer` (an operand whose memory rows are the pieces' lines: each line is then read
// along), chunks outer otherwise (memory rows are k: each k row is read across all pieces).
template <typename Fn>
inline void ForEachPiece(int64_t pieces, int64_t chunks, bool pieces_outer, const Fn& fn) {
  if (pieces_outer) {
    for (int64_t p = 0; p < pieces; ++p) {
      for (int64_t c = 0; c < chunks; ++c) fn(p, c);
    }
  } else {
    for (int64_t c = 0; c < chunks; ++c) {
      for (int64_t p = 0; p < pieces; ++p) fn(p, c);
    }
  }
}

// Tiles 4-5: part P of the A pieces a0 (rows 0-15), a1 (rows 16-31); tiles 6-7: part P of
// the B pieces b0 (columns 0-15), b1 (columns 16-31).
template <int P>
inline __attribute__((always_inline)) void LoadA(const uint16_t* a0, const uint16_t* a1) {
  _tile_loadd(4, a0 + P * kTile, 64);
  _tile_loadd(5, a1 + P * kTile, 64);
}
template <int P>
inline __attribute__((always_inline)) void LoadB(const uint16_t* b0, const uint16_t* b1) {
  _tile_loadd(6, b0 + P * kTile, 64);
  _tile_loadd(7, b1 + P * kTile, 64);
}
// The 32 x 32 accumulators (tiles 0-3) += tiles 4-5 times tiles 6-7.
inline __attribute__((always_inline)) void Multiply() {
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

// out [32][ld] (+)= one 32 x 32 block of op(A) op(B) over `chunks` chunks of k (added to what
// out holds when `load`). a0/a1: the row halves' packed pieces, b0/b1: the column halves', each
// `chunks` consecutive kPartTiles. Per chunk the six part products, smallest first, ordered so
// that 16 tile loads serve 24 multiplies: (a2,b0) (a1,b0) (a0,b0) (a0,b1) (a1,b1) (a0,b2).
void Block(const uint16_t* a0, const uint16_t* a1, const uint16_t* b0, const uint16_t* b1,
           int64_t chunks, float* out, int64_t ld, bool load) {
  const int64_t stride = ld * static_cast<int64_t>(sizeof(float));
  float* o1 = out + 16;
  float* o2 = out + 16 * ld;
  float* o3 = out + 16 * ld + 16;
  if (load) {
    _tile_loadd(0, out, stride);
    _tile_loadd(1, o1, stride);
    _tile_loadd(2, o2, stride);
    _tile_loadd(3, o3, stride);
  } else {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
  }
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t o = c * kPartTiles;
    LoadB<0>(b0 + o, b1 + o);
    LoadA<2>(a0 + o, a1 + o);
    Multiply();
    LoadA<1>(a0 + o, a1 + o);
    Multiply();
    LoadA<0>(a0 + o, a1 + o);
    Multiply();
    LoadB<1>(b0 + o, b1 + o);
    Multiply();
    LoadA<1>(a0 + o, a1 + o);
    Multiply();
    LoadA<0>(a0 + o, a1 + o);
    LoadB<2>(b0 + o, b1 + o);
    Multiply();
  }
  _tile_stored(0, out, stride);
  _tile_stored(1, o1, stride);
  _tile_stored(2, o2, stride);
  _tile_stored(3, o3, stride);
}

// C rows [i0, i0+rows) x columns [j0, j0+cols) from v [32][32]: the first k block writes
// alpha * v + beta * C (C unread when beta == 0), later ones add alpha * v.
void WriteC(const GemmArgs& g, int64_t i0, int64_t j0, int64_t rows, int64_t cols,
            const float* acc, bool first) {
  const __m512 alpha = _mm512_set1_ps(g.alpha), beta = _mm512_set1_ps(g.beta);
  for (int64_t i = 0; i < rows; ++i) {
    float* c = g.c + (i0 + i) * g.ldc + j0;
    for (int64_t h = 0; h < 2; ++h) {
      const __mmask16 m = FirstLanes(cols - 16 * h);
      if (m == 0) break;
      const __m512 v = _mm512_mul_ps(alpha, _mm512_loadu_ps(acc + i * 32 + 16 * h));
      __m512 out = v;
      if (!first || g.beta != 0.0f) {
        const __m512 old = _mm512_maskz_loadu_ps(m, c + 16 * h);
        out = _mm512_add_ps(first ? _mm512_mul_ps(beta, old) : old, v);
      }
      _mm512_mask_storeu_ps(c + 16 * h, m, out);
    }
  }
}

// Rows [r0, r1) of C, with B already packed at bp ([N/16 padded to even][chunks of K] pieces).
// bf16 per thread for its packed block of A.
constexpr int64_t kABlockSize = kMBlock / 16 * kMaxKChunks * kPartTiles;

void ComputeRows(const GemmArgs& g, const uint16_t* bp, uint16_t* ap, int64_t r0, int64_t r1) {
  UseAmxTiles(GemmTiles());
  alignas(64) float acc[32 * 32];
  const int64_t k_chunks = (g.k + kChunk - 1) / kChunk;
  const int64_t n_blocks = (g.n + 31) / 32;
  // k blocks of equal size (in chunks), at most kMaxKChunks each.
  const int64_t k_blocks = (k_chunks + kMaxKChunks - 1) / kMaxKChunks;
  const int64_t block_chunks = (k_chunks + k_blocks - 1) / k_blocks;
  // Full 32 x 32 blocks accumulate in C itself when C = op(A) op(B) (+ C).
  const bool in_place = g.alpha == 1.0f && (g.beta == 0.0f || g.beta == 1.0f);
  for (int64_t mc = r0; mc < r1; mc += kMBlock) {
    const int64_t rows = std::min(kMBlock, r1 - mc);
    const int64_t m16 = (rows + 31) / 32 * 2;  // row pieces, even
    for (int64_t kc0 = 0; kc0 < k_chunks; kc0 += block_chunks) {
      const int64_t chunks = std::min(block_chunks, k_chunks - kc0);
      const int64_t k0 = kc0 * kChunk;
      // Along A's rows in memory: op(A)'s rows when A is not transposed, else its k.
      ForEachPiece(m16, chunks, !g.trans_a, [&](int64_t p, int64_t c) {
        uint16_t* dst = ap + (p * chunks + c) * kPartTiles;
        if (16 * p < rows) {
          PackA(g, mc + 16 * p, k0 + c * kChunk, dst);
        } else {
          std::memset(dst, 0, kPartTiles * sizeof(uint16_t));
        }
      });
      for (int64_t nb = 0; nb < n_blocks; ++nb) {
        const uint16_t* b0 = bp + ((2 * nb) * k_chunks + kc0) * kPartTiles;
        const uint16_t* b1 = bp + ((2 * nb + 1) * k_chunks + kc0) * kPartTiles;
        const int64_t cols = std::min<int64_t>(32, g.n - 32 * nb);
        for (int64_t mb = 0; mb < m16 / 2; ++mb) {
          const uint16_t* a0 = ap + (2 * mb) * chunks * kPartTiles;
          const int64_t i0 = mc + 32 * mb, block_rows = std::min<int64_t>(32, rows - 32 * mb);
          const bool first = kc0 == 0;
          if (in_place && block_rows == 32 && cols == 32) {
            Block(a0, a0 + chunks * kPartTiles, b0, b1, chunks, g.c + i0 * g.ldc + 32 * nb, g.ldc,
                  !first || g.beta != 0.0f);
          } else {
            Block(a0, a0 + chunks * kPartTiles, b0, b1, chunks, acc, 32, false);
            WriteC(g, i0, 32 * nb, block_rows, cols, acc, first);
          }
        }
      }
    }
  }
}

}  // namespace

bool HasAmxBf16() {
  static const bool has = HasAmx(22);
  return has;
}

bool SplitBf16GemmApplies(const GemmArgs& g) {
  // ANVIL_GEMM_SPLIT_BF16=all: every non-empty product (tests run the tiny models through it).
  static const bool all = [] {
    const char* e = std::getenv("ANVIL_GEMM_SPLIT_BF16");
    return e != nullptr && std::string_view(e) == "all";
  }();
  if (g.m <= 0 || g.n <= 0 || g.k <= 0 || g.alpha == 0.0f || !HasAmxBf16()) return false;
  return all || (g.m >= 32 && g.n >= 32 && g.k >= 32 && g.m * g.n * g.k >= kMinMacs);
}

absl::Status SplitBf16Gemm(ThreadPool* pool, const GemmArgs& g) {
  if (!HasAmxBf16()) {
    return absl::FailedPreconditionError("gemm: split-bf16 needs AMX-BF16 (and no ANVIL_NO_AMX)");
  }
  if (g.m == 0 || g.n == 0 || g.k == 0 || g.alpha == 0.0f) {
    return absl::FailedPreconditionError(absl::StrCat(
        "gemm: split-bf16 takes no empty product: M=", g.m, " N=", g.n, " K=", g.k,
        " alpha=", g.alpha));
  }
  const int64_t k_chunks = (g.k + kChunk - 1) / kChunk;
  const int64_t n16 = (g.n + 31) / 32 * 2;
  // One buffer of the calling thread: packed B, then each pool thread's block of A.
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  const int64_t b_size = n16 * k_chunks * kPartTiles;
  thread_local Bf16Buffer buffer;
  uint16_t* bp = buffer.Get(b_size + threads * kABlockSize);
  if (bp == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "gemm: split-bf16 cannot allocate ", 2 * (b_size + threads * kABlockSize),
        " bytes of packed operands (M=", g.m, " N=", g.n, " K=", g.k, ")"));
  }
  // The threads split B along its rows in memory: op(B)'s columns when B is transposed, else k.
  const int64_t split = g.trans_b ? n16 : k_chunks;
  auto pack_b = [&](int64_t s0, int64_t s1, int) {
    const int64_t p0 = g.trans_b ? s0 : 0, p1 = g.trans_b ? s1 : n16;
    const int64_t c0 = g.trans_b ? 0 : s0, c1 = g.trans_b ? k_chunks : s1;
    ForEachPiece(p1 - p0, c1 - c0, g.trans_b, [&](int64_t p, int64_t c) {
      p += p0, c += c0;
      uint16_t* dst = bp + (p * k_chunks + c) * kPartTiles;
      if (16 * p < g.n) {
        PackB(g, 16 * p, c * kChunk, dst);
      } else {
        std::memset(dst, 0, kPartTiles * sizeof(uint16_t));
      }
    });
  };
  auto rows = [&](int64_t r0, int64_t r1, int t) {
    ComputeRows(g, bp, bp + b_size + t * kABlockSize, r0, r1);
  };
  if (pool == nullptr || pool->num_threads() == 1) {
    pack_b(0, split, 0);
    rows(0, g.m, 0);
  } else {
    pool->ParallelFor(split, 1, pack_b);
    pool->ParallelFor(g.m, 32, rows);
  }
  return absl::OkStatus();
}

}  // namespace anvil::cpu
