// Quantized matrix-vector products for small M (decode): y [m][n] = x [m][k] . W [n][k]^T with W
// in Q8_0/Q4_0/Q4_1 and x already quantized to 8 bits per 32-block (convert.cu). Memory bound:
// the whole point is to stream W at close to the device's bandwidth. Large M goes through cuBLAS
// instead (kernels/cuda/matmul.cc).
//
// Strategy: W is cut into tiles of R consecutive weight rows (R a power of two), each one
// contiguous byte range of at most kTileDataBytes; rows longer than that (R = 1) are cut into
// chunks of whole blocks. A persistent grid (three or four CTAs per SM) walks the tiles; each CTA
// keeps the next tile's loads in flight (16-byte loads staged in registers) while it computes
// on the current one from shared memory (double buffer), so the memory system never waits for
// the arithmetic. Blocks are only 2-byte aligned, so a tile's first and last 16-byte chunks are
// assembled from 16-bit loads and no byte outside W is read. In the tile, 256/R threads per row
// each take every (256/R)-th block and do integer block dots with __dp4a. Partial sums are
// reduced in a fixed order, so results are deterministic.
//
// The kernel is launched with programmatic dependent launch: it issues its first tile's loads
// (W does not depend on the activations), then waits for the kernel before it (which wrote the
// activations) before it reads them, which hides most of the launch gap between the two. It
// lets its own dependents launch at once, so the next GEMV's CTAs take each SM slot this grid
// frees and start streaming their weights during this grid's tail.
//
// Two ways to get the activations:
//   * two kernels: LaunchQuantizeActivationsQ8 (convert.cu) writes them to global memory, the
//     GEMV reads them through the read-only cache;
//   * fused: each CTA quantizes the f32 rows itself into shared memory while its first tile's
//     loads are in flight: x is staged through the (still free) tile buffers with
//     asynchronous copies and quantized with the same arithmetic, so the bits are the same.
//     One launch instead of two, and the block dots read shared memory laid out so a warp's
//     reads are conflict-free: elements 0-15 of every block first, then elements 16-31 of
//     every block. Every CTA redoes the quantization, which pays for short rows (K <= 4096 on
//     an H100) and not for long ones; matmul.cc chooses.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <set>
#include <utility>

#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/gemv_acts.cuh"
#include "kernels/cuda/launch_matmul.h"
#include "kernels/cuda/quant_blocks.cuh"

namespace anvil::cuda {
namespace {

constexpr int kThreads = gemv::kThreads;
constexpr int kWarps = kThreads / 32;
constexpr int kTileBytes = gemv::kTileBytes;  // one shared-memory buffer
// Weight bytes per tile: the range starts at any 2-byte offset, which lands at tile offset
// (address % 16) so that 16-byte chunks stay aligned; 16 bytes of slack cover that.
constexpr int kTileDataBytes = kTileBytes - 16;
constexpr int kChunksPerThread = kTileBytes / 16 / kThreads;  // 16-byte loads in flight each
static_assert(kChunksPerThread * 16 * kThreads == kTileBytes, "one sweep stages a tile");
// Two 16 KB buffers per CTA. With one or two activation rows a thread needs <= 64 registers and
// four CTAs fit an SM (64 KB of loads in flight per SM while the CTAs compute); more rows need
// more accumulators and registers: three CTAs (<= 85 registers).
constexpr int CtasPerSm(int m) { return m <= 2 ? 4 : 3; }
// The kernel's static shared memory (two tiles, the cross-warp partial sums at most kM = 8).
constexpr int64_t kStaticSmemBytes = 2 * (kTileBytes + 16) + kWarps * 8 * 4;

// Tile bytes [16c, 16c + 16) of a range whose wanted bytes are [head, end) (both even): the
// 16-byte chunk at `chunk` (16-byte aligned), with only bytes [lo, hi) of it read (16-bit loads).
__device__ __forceinline__ uint4 LoadEdgeChunk(const uint8_t* chunk, int lo, int hi) {
  const auto* h = reinterpret_cast<const uint16_t*>(chunk);
  uint32_t word[4] = {0, 0, 0, 0};
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (2 * j >= lo && 2 * j < hi) {
      word[j / 2] |= static_cast<uint32_t>(__ldg(h + j)) << (16 * (j % 2));
    }
  }
  return make_uint4(word[0], word[1], word[2], word[3]);
}

// Stages src[0, len) (2-byte aligned, len even, len <= kTileDataBytes) in registers: thread t
// holds tile chunks t, t + kThreads, ... where tile byte head + i is src byte i and
// head = src % 16. Returns head.
__device__ __forceinline__ int LoadTile(const uint8_t* __restrict__ src, int len,
                                        uint4 (&v)[kChunksPerThread]) {
  const int head = static_cast<int>(reinterpret_cast<uintptr_t>(src) & 15);
  const int end = head + len;
  const uint8_t* base = src - head;  // 16-byte aligned; only bytes [head, end) are read
#pragma unroll
  for (int u = 0; u < kChunksPerThread; ++u) {
    const int c0 = (u * kThreads + static_cast<int>(threadIdx.x)) * 16;
    if (c0 >= head && c0 + 16 <= end) {
      v[u] = __ldg(reinterpret_cast<const uint4*>(base + c0));
    } else if (c0 < end && c0 + 16 > head) {
      v[u] = LoadEdgeChunk(base + c0, max(head - c0, 0), min(end - c0, 16));
    } else {
      v[u] = make_uint4(0, 0, 0, 0);
    }
  }
  return head;
}

__device__ __forceinline__ void StoreTile(const uint4 (&v)[kChunksPerThread], uint8_t* tile) {
#pragma unroll
  for (int u = 0; u < kChunksPerThread; ++u) {
    *reinterpret_cast<uint4*>(tile + (u * kThreads + static_cast<int>(threadIdx.x)) * 16) = v[u];
  }
}

// Integer dot of one decoded weight block with 32 activation bytes (two int4, elements 0..31).
__device__ __forceinline__ int BlockDot(const int32_t (&wq)[8], const int4& a, const int4& b) {
  int s = __dp4a(wq[0], a.x, 0);
  s = __dp4a(wq[1], a.y, s);
  s = __dp4a(wq[2], a.z, s);
  s = __dp4a(wq[3], a.w, s);
  s = __dp4a(wq[4], b.x, s);
  s = __dp4a(wq[5], b.y, s);
  s = __dp4a(wq[6], b.z, s);
  return __dp4a(wq[7], b.w, s);
}

// The tiles of W: group g is rows [g*R, g*R + R) (fewer at the end), cut into `chunks` tiles of
// up to blocks_per_chunk blocks each (chunks == 1 whenever R > 1).
struct TilePlan {
  int64_t n;
  int nb;                // blocks per row
  int rows_per_cta;      // R, a power of two dividing kThreads
  int blocks_per_chunk;  // == nb when R > 1
  int chunks;            // tiles per group
  int64_t groups;
};

struct TileRef {
  int64_t group;
  int chunk;
};

template <int kBB>
__device__ __forceinline__ const uint8_t* TileSource(const uint8_t* w, const TilePlan& p,
                                                     TileRef t, int* len, int* rows_here,
                                                     int* cb) {
  *rows_here = static_cast<int>(
      min(static_cast<int64_t>(p.rows_per_cta), p.n - t.group * p.rows_per_cta));
  *cb = min(p.blocks_per_chunk, p.nb - t.chunk * p.blocks_per_chunk);
  *len = *rows_here * *cb * kBB;
  return w + (t.group * p.rows_per_cta * p.nb + static_cast<int64_t>(t.chunk) * p.blocks_per_chunk) *
                 kBB;
}

// How the kernel gets its activations: kActsGlobal from LaunchQuantizeActivationsQ8's buffers,
// kActsShared by quantizing x in each CTA (StageAndQuantize).
constexpr int kActsGlobal = 0, kActsShared = 1;

// y: [kM][n] (row stride n).
template <QuantType T, int kM, int kActs>
__global__ void __launch_bounds__(kThreads, CtasPerSm(kM))
    GemvQuantKernel(const uint8_t* __restrict__ w, TilePlan p, GemvActs acts,
                    float* __restrict__ y) {
  constexpr int kBB = QuantBlock<T>::kBytes;
  // 16 bytes of slack after each tile for DecodeBlockPadded's extra word.
  __shared__ __align__(16) uint8_t tiles[2][kTileBytes + 16];
  __shared__ float partial[kWarps][kM];
  extern __shared__ __align__(16) uint8_t act_smem[];  // fused only: FusedActBytes(kM, nb)
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif

  const int tid = static_cast<int>(threadIdx.x);
  const int tpr = kThreads / p.rows_per_cta;  // threads per row
  const int row_local = tid / tpr, sub = tid % tpr;

  TileRef cur{blockIdx.x, 0};
  if (cur.group >= p.groups) return;
  int len, rows_here, cb;
  uint4 v[kChunksPerThread];
  int head = LoadTile(TileSource<kBB>(w, p, cur, &len, &rows_here, &cb), len, v);
  // Everything above reads W only; the activations come from the kernel launched before this
  // one (programmatic dependent launch): wait for it here. A no-op without that launch mode.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
  if constexpr (kActs == kActsShared) {
    StageAndQuantize<kM>(acts.x, p.nb, &tiles[0][0], act_smem);
  }
  StoreTile(v, tiles[0]);
  __syncthreads();

  float acc[kM];
#pragma unroll
  for (int i = 0; i < kM; ++i) acc[i] = 0.0f;
  int buf = 0;
  for (;;) {
    // Issue the next tile's loads first; they complete while this tile is computed.
    TileRef next = cur;
    if (++next.chunk == p.chunks) {
      next.chunk = 0;
      next.group += gridDim.x;
    }
    const bool has_next = next.group < p.groups;  // uniform across the CTA
    int next_len = 0, next_rows = 0, next_cb = 0, next_head = 0;
    if (has_next) {
      next_head = LoadTile(TileSource<kBB>(w, p, next, &next_len, &next_rows, &next_cb),
                           next_len, v);
    }

    if (row_local < rows_here) {
      const uint8_t* row_tile = tiles[buf] + head + row_local * cb * kBB;
      const int64_t b0 = static_cast<int64_t>(cur.chunk) * p.blocks_per_chunk;
      for (int b = sub; b < cb; b += tpr) {
        int32_t wq[8];
        float dw, mw;
        DecodeBlockPadded<T>(row_tile + b * kBB, wq, dw, mw);
        const int64_t xb = b0 + b;
#pragma unroll
        for (int i = 0; i < kM; ++i) {
          int4 lo, hi;
          float dx, sx;
          LoadActBlock<kM, kActs != kActsGlobal, T == QuantType::kQ4_1>(acts, act_smem, p.nb, i,
                                                                        xb, lo, hi, dx, sx);
          const int sumi = BlockDot(wq, lo, hi);
          acc[i] = fmaf(dw * dx, static_cast<float>(sumi), acc[i]);
          if constexpr (T == QuantType::kQ4_1) acc[i] = fmaf(mw, sx, acc[i]);
        }
      }
    }

    if (cur.chunk == p.chunks - 1) {
      // Reduce each row's tpr partial sums: butterfly within groups of min(tpr, 32) lanes
      // (aligned inside the warp), then across the row's warps in warp order.
      const int lanes = min(tpr, 32);
#pragma unroll
      for (int i = 0; i < kM; ++i) {
        for (int off = lanes / 2; off > 0; off >>= 1) {
          acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
        }
      }
      const int64_t row = cur.group * p.rows_per_cta + row_local;
      if (tpr > 32) {  // uniform across the CTA
        const int warp = tid >> 5;
        if ((tid & 31) == 0) {
#pragma unroll
          for (int i = 0; i < kM; ++i) partial[warp][i] = acc[i];
        }
        __syncthreads();
        if (sub == 0 && row_local < rows_here) {
          const int wpr = tpr / 32, first = row_local * wpr;
#pragma unroll
          for (int i = 0; i < kM; ++i) {
            float s = 0.0f;
            for (int j = 0; j < wpr; ++j) s += partial[first + j][i];
            y[i * p.n + row] = s;
          }
        }
      } else if (sub == 0 && row_local < rows_here) {
#pragma unroll
        for (int i = 0; i < kM; ++i) y[i * p.n + row] = acc[i];
      }
#pragma unroll
      for (int i = 0; i < kM; ++i) acc[i] = 0.0f;
    }

    if (!has_next) break;
    // The other buffer was last read before the previous iteration's barrier: free to fill.
    buf ^= 1;
    StoreTile(v, tiles[buf]);
    __syncthreads();  // the tile is visible; `partial` reads are done
    cur = next;
    head = next_head;
    len = next_len;
    rows_here = next_rows;
    cb = next_cb;
  }
}

TilePlan PlanTiles(int block_bytes, int64_t n, int nb, int sm_count) {
  TilePlan p{n, nb, 1, nb, 1, 0};
  const int64_t row_bytes = static_cast<int64_t>(nb) * block_bytes;
  if (row_bytes > kTileDataBytes) {
    p.blocks_per_chunk = kTileDataBytes / block_bytes;
    p.chunks = (nb + p.blocks_per_chunk - 1) / p.blocks_per_chunk;
  } else {
    // As many rows as fit a tile (at most one per thread)...
    while (p.rows_per_cta * 2 <= kThreads && p.rows_per_cta * 2 * row_bytes <= kTileDataBytes) {
      p.rows_per_cta *= 2;
    }
    // ...but small matrices are cut finer so that every CTA of the grid has a tile.
    const int64_t ctas = static_cast<int64_t>(sm_count) * CtasPerSm(1);
    while (p.rows_per_cta > 1 && (n + p.rows_per_cta - 1) / p.rows_per_cta < ctas) {
      p.rows_per_cta /= 2;
    }
  }
  p.groups = (n + p.rows_per_cta - 1) / p.rows_per_cta;
  return p;
}

using GemvKernelFn = void (*)(const uint8_t*, TilePlan, GemvActs, float*);

template <QuantType T, int kActs>
GemvKernelFn KernelForRows(int rows) {
  static_assert(kGemvMaxRowsPerPass == 8, "one instantiation per row count below");
  switch (rows) {
    case 1:
      return GemvQuantKernel<T, 1, kActs>;
    case 2:
      return GemvQuantKernel<T, 2, kActs>;
    case 3:
      return GemvQuantKernel<T, 3, kActs>;
    case 4:
      return GemvQuantKernel<T, 4, kActs>;
    case 5:
      return GemvQuantKernel<T, 5, kActs>;
    case 6:
      return GemvQuantKernel<T, 6, kActs>;
    case 7:
      return GemvQuantKernel<T, 7, kActs>;
    default:
      return GemvQuantKernel<T, 8, kActs>;
  }
}

template <int kActs>
GemvKernelFn KernelFor(QuantType type, int rows) {
  switch (type) {
    case QuantType::kQ8_0:
      return KernelForRows<QuantType::kQ8_0, kActs>(rows);
    case QuantType::kQ4_0:
      return KernelForRows<QuantType::kQ4_0, kActs>(rows);
    case QuantType::kQ4_1:
      break;
  }
  return KernelForRows<QuantType::kQ4_1, kActs>(rows);
}

// The fused kernels take more than the default 48 KB of shared memory: raise each one's limit
// to the device's per-block maximum once per device (the launch's own size sets occupancy).
cudaError_t AllowLargeSharedMemory(GemvKernelFn fn, int smem_per_block_optin) {
  static std::mutex mu;
  static std::set<std::pair<const void*, int>>* done = new std::set<std::pair<const void*, int>>;
  int device = 0;
  if (cudaError_t e = cudaGetDevice(&device); e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lock(mu);
  if (done->count({reinterpret_cast<const void*>(fn), device}) != 0) return cudaSuccess;
  const int dynamic_max = smem_per_block_optin - static_cast<int>(kStaticSmemBytes);
  if (cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           dynamic_max);
      e != cudaSuccess) {
    return e;
  }
  // Shared memory before L1: the fused kernel reads x once and everything else from shared.
  if (cudaError_t e = cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout,
                                           cudaSharedmemCarveoutMaxShared);
      e != cudaSuccess) {
    return e;
  }
  done->insert({reinterpret_cast<const void*>(fn), device});
  return cudaSuccess;
}

// Checks shared by both launchers; fills nb and the tile plan.
cudaError_t PlanGemv(QuantType type, int64_t m, int64_t n, int64_t k, int sm_count, int* nb,
                     TilePlan* plan) {
  if (m < 0 || n < 0 || k <= 0 || k % 32 != 0 || k / 32 > 0x7FFFFFFF) {
    return cudaErrorInvalidValue;
  }
  *nb = static_cast<int>(k / 32);
  if (m == 0 || n == 0) return cudaSuccess;
  *plan = PlanTiles(QuantBlockBytes(type), n, *nb, sm_count > 0 ? sm_count : 132);
  return cudaSuccess;
}

unsigned GridFor(const TilePlan& p, int sm_count, int rows) {
  const int64_t max_ctas = static_cast<int64_t>(sm_count > 0 ? sm_count : 132) * CtasPerSm(rows);
  return static_cast<unsigned>(std::min(p.groups, max_ctas));
}

}  // namespace

cudaError_t LaunchGemvQuant(QuantType type, const void* w, int64_t n, int64_t k, const int8_t* xq,
                            const float* xd, const float* xs, int64_t m, float* y, int sm_count,
                            cudaStream_t stream) {
  int nb = 0;
  TilePlan plan{};
  if (cudaError_t e = PlanGemv(type, m, n, k, sm_count, &nb, &plan); e != cudaSuccess) return e;
  if (m == 0 || n == 0) return cudaSuccess;
  const auto* wb = static_cast<const uint8_t*>(w);
  // Passes of up to kGemvMaxRowsPerPass activation rows; each streams W once.
  for (int64_t m0 = 0; m0 < m; m0 += kGemvMaxRowsPerPass) {
    const int rows = static_cast<int>(std::min<int64_t>(kGemvMaxRowsPerPass, m - m0));
    const GemvActs acts{xq + m0 * k, xd + m0 * nb, xs != nullptr ? xs + m0 * nb : nullptr,
                        nullptr};
    if (cudaError_t e = LaunchDependent(KernelFor<kActsGlobal>(type, rows),
                                        GridFor(plan, sm_count, rows), kThreads, 0, stream, wb,
                                        plan, acts, y + m0 * n);
        e != cudaSuccess) {
      return e;
    }
  }
  return cudaSuccess;
}

bool GemvQuantFusedFits(int64_t m, int64_t k, int smem_per_sm, int smem_per_block_optin) {
  if (m <= 0 || k <= 0 || k % 32 != 0) return false;
  // Every pass size that occurs: full passes and the last, shorter one.
  for (int64_t rows : {std::min<int64_t>(m, kGemvMaxRowsPerPass), m % kGemvMaxRowsPerPass}) {
    if (rows == 0) continue;
    const int64_t block = kStaticSmemBytes + FusedActBytes(rows, k / 32);
    if (block > smem_per_block_optin) return false;
    // Occupancy as planned (CtasPerSm), with the 1 KB the hardware reserves per CTA.
    if (CtasPerSm(static_cast<int>(rows)) * (block + 1024) > smem_per_sm) return false;
  }
  return true;
}

cudaError_t LaunchGemvQuantFused(QuantType type, const void* w, int64_t n, int64_t k,
                                 const float* x, int64_t m, float* y, int sm_count,
                                 int smem_per_block_optin, cudaStream_t stream) {
  int nb = 0;
  TilePlan plan{};
  if (cudaError_t e = PlanGemv(type, m, n, k, sm_count, &nb, &plan); e != cudaSuccess) return e;
  if (reinterpret_cast<uintptr_t>(x) % 16 != 0) return cudaErrorInvalidValue;
  if (m == 0 || n == 0) return cudaSuccess;
  const auto* wb = static_cast<const uint8_t*>(w);
  for (int64_t m0 = 0; m0 < m; m0 += kGemvMaxRowsPerPass) {
    const int rows = static_cast<int>(std::min<int64_t>(kGemvMaxRowsPerPass, m - m0));
    const GemvKernelFn fn = KernelFor<kActsShared>(type, rows);
    if (cudaError_t e = AllowLargeSharedMemory(fn, smem_per_block_optin); e != cudaSuccess) {
      return e;
    }
    const GemvActs acts{nullptr, nullptr, nullptr, x + m0 * k};
    if (cudaError_t e = LaunchDependent(fn, GridFor(plan, sm_count, rows), kThreads,
                                        static_cast<size_t>(FusedActBytes(rows, nb)), stream, wb,
                                        plan, acts, y + m0 * n);
        e != cudaSuccess) {
      return e;
    }
  }
  return cudaSuccess;
}

}  // namespace anvil::cuda
