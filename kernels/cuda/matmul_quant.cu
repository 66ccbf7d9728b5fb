// Quantized matrix-vector products for small M (decode): y [m][n] = x [m][k] . W [n][k]^T with W
// in Q8_0/Q4_0/Q4_1 and x already quantized to 8 bits per 32-block (convert.cu). Memory bound:
// the whole point is to stream W at close to the device's bandwidth. Large M goes through cuBLAS
// instead (kernels/cuda/matmul.cc).
//
// Strategy (gemv_smem_tiled): each CTA owns a tile of R consecutive weight rows (R a power of
// two), which is one contiguous byte range of at most kTileBytes. The CTA copies it into shared
// memory with coalesced 16-byte loads (four in flight per thread; the unaligned head and tail of
// the range go byte by byte, since blocks are only 2-byte aligned), then 256/R threads per row
// each take every (256/R)-th block of that row and do the integer block dots with __dp4a. Rows
// longer than the tile (R = 1) are streamed in chunks of whole blocks. Several CTAs per SM keep
// copies of one in flight while another computes. Partial sums are reduced in a fixed order,
// so results are deterministic.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/cuda/launch_matmul.h"
#include "kernels/cuda/quant_blocks.cuh"

namespace anvil::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kTileBytes = 16384;
// Four resident CTAs per SM (<= 64 registers per thread) keep up to 64 KB of copies in flight
// per SM, several times what the memory system needs to stay busy.
constexpr int kMinCtasPerSm = 4;
constexpr int kCopyUnroll = 4;  // 16-byte loads per thread issued before the first store
static_assert(kThreads * kCopyUnroll * 16 == kTileBytes, "one unrolled sweep copies a tile");

// Copies src[0, len) (any alignment; len <= kTileBytes) to tile[head, head + len), where
// head = src % 16, so that the 16-byte-aligned chunks of src land on 16-byte-aligned tile
// addresses. Reads no byte outside src[0, len). Returns head. The caller synchronizes.
__device__ __forceinline__ int CopyToShared(const uint8_t* __restrict__ src, int len,
                                            uint8_t* tile) {
  const int head = static_cast<int>(reinterpret_cast<uintptr_t>(src) & 15);
  const int end = head + len;  // tile bytes [head, end) are wanted
  const int chunks = (end + 15) >> 4;
  // Chunk c is tile bytes [16c, 16c + 16), i.e. src bytes [16c - head, 16c + 16 - head).
  const auto* aligned = reinterpret_cast<const uint4*>(src - head);
  for (int c0 = 0; c0 < chunks; c0 += kThreads * kCopyUnroll) {
    uint4 v[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) {
      const int c = c0 + u * kThreads + static_cast<int>(threadIdx.x);
      if (c * 16 >= head && c * 16 + 16 <= end) {
        v[u] = __ldg(aligned + c);
      } else {
        v[u] = make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u) {
      const int c = c0 + u * kThreads + static_cast<int>(threadIdx.x);
      if (c >= chunks) continue;
      if (c * 16 >= head && c * 16 + 16 <= end) {
        *reinterpret_cast<uint4*>(tile + c * 16) = v[u];
      } else {
        for (int j = 0; j < 16; ++j) {
          const int o = c * 16 + j;
          if (o >= head && o < end) tile[o] = src[o - head];
        }
      }
    }
  }
  return head;
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

// w: [n][nb blocks]; xq: [kM][nb*32] int8; xd, xs: [kM][nb]; y: [kM][n] (row stride n).
// rows_per_cta (R) divides kThreads; blocks_per_chunk == nb whenever R > 1, and
// R * blocks_per_chunk * block bytes <= kTileBytes.
template <QuantType T, int kM>
__global__ void __launch_bounds__(kThreads, kMinCtasPerSm)
    GemvQuantSmemTiledKernel(const uint8_t* __restrict__ w, int64_t n, int nb, int rows_per_cta,
                             int blocks_per_chunk, const int8_t* __restrict__ xq,
                             const float* __restrict__ xd, const float* __restrict__ xs,
                             float* __restrict__ y) {
  constexpr int kBB = QuantBlock<T>::kBytes;
  __shared__ __align__(16) uint8_t tile[kTileBytes + 16];
  __shared__ float partial[kWarps][kM];

  const int tid = static_cast<int>(threadIdx.x);
  const int tpr = kThreads / rows_per_cta;  // threads per row
  const int row_local = tid / tpr, sub = tid % tpr;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * rows_per_cta;
  const int rows_here = static_cast<int>(min(static_cast<int64_t>(rows_per_cta), n - r0));
  const int64_t row_bytes = static_cast<int64_t>(nb) * kBB;
  const int64_t k = static_cast<int64_t>(nb) * 32;

  float acc[kM];
#pragma unroll
  for (int i = 0; i < kM; ++i) acc[i] = 0.0f;

  for (int b0 = 0; b0 < nb; b0 += blocks_per_chunk) {
    const int cb = min(blocks_per_chunk, nb - b0);
    // rows_here rows x cb blocks: contiguous, because cb == nb or rows_here == 1.
    const uint8_t* src = w + r0 * row_bytes + static_cast<int64_t>(b0) * kBB;
    __syncthreads();  // everyone is done reading the previous chunk
    const int head = CopyToShared(src, rows_here * cb * kBB, tile);
    __syncthreads();
    if (row_local < rows_here) {
      const uint8_t* row_tile = tile + head + row_local * cb * kBB;
      for (int b = sub; b < cb; b += tpr) {
        int32_t wq[8];
        float dw, mw;
        DecodeBlock<T>(row_tile + b * kBB, wq, dw, mw);
        const int64_t xb = b0 + b;
#pragma unroll
        for (int i = 0; i < kM; ++i) {
          const auto* xp = reinterpret_cast<const int4*>(xq + i * k + xb * 32);
          const int sumi = BlockDot(wq, __ldg(xp), __ldg(xp + 1));
          acc[i] = fmaf(dw * __ldg(xd + i * nb + xb), static_cast<float>(sumi), acc[i]);
          if constexpr (T == QuantType::kQ4_1) {
            acc[i] = fmaf(mw, __ldg(xs + i * nb + xb), acc[i]);
          }
        }
      }
    }
  }

  // Reduce each row's tpr partial sums: butterfly within groups of min(tpr, 32) lanes (the
  // groups are aligned inside the warp), then across the row's warps in warp order.
  const int group = min(tpr, 32);
#pragma unroll
  for (int i = 0; i < kM; ++i) {
    for (int off = group / 2; off > 0; off >>= 1) {
      acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], off);
    }
  }
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
        y[i * n + r0 + row_local] = s;
      }
    }
  } else if (sub == 0 && row_local < rows_here) {
#pragma unroll
    for (int i = 0; i < kM; ++i) y[i * n + r0 + row_local] = acc[i];
  }
}

struct GemvPlan {
  int rows_per_cta;
  int blocks_per_chunk;
  int64_t ctas;
};

GemvPlan PlanGemv(int block_bytes, int64_t n, int nb, int sm_count) {
  GemvPlan p{1, nb, 0};
  const int64_t row_bytes = static_cast<int64_t>(nb) * block_bytes;
  if (row_bytes > kTileBytes) {
    p.blocks_per_chunk = kTileBytes / block_bytes;
  } else {
    // As many rows as fit the tile (at most one per thread)...
    while (p.rows_per_cta * 2 <= kThreads && p.rows_per_cta * 2 * row_bytes <= kTileBytes) {
      p.rows_per_cta *= 2;
    }
    // ...but small matrices are spread over at least ~2 CTAs per SM so that every SM loads.
    const int64_t min_ctas = 2 * static_cast<int64_t>(sm_count > 0 ? sm_count : 132);
    while (p.rows_per_cta > 1 && (n + p.rows_per_cta - 1) / p.rows_per_cta < min_ctas) {
      p.rows_per_cta /= 2;
    }
  }
  p.ctas = (n + p.rows_per_cta - 1) / p.rows_per_cta;
  return p;
}

template <QuantType T, int kM>
void LaunchPass(const GemvPlan& p, const uint8_t* w, int64_t n, int nb, const int8_t* xq,
                const float* xd, const float* xs, float* y, cudaStream_t stream) {
  GemvQuantSmemTiledKernel<T, kM><<<static_cast<unsigned>(p.ctas), kThreads, 0, stream>>>(
      w, n, nb, p.rows_per_cta, p.blocks_per_chunk, xq, xd, xs, y);
}

template <QuantType T>
void LaunchPassForRows(int rows, const GemvPlan& p, const uint8_t* w, int64_t n, int nb,
                       const int8_t* xq, const float* xd, const float* xs, float* y,
                       cudaStream_t stream) {
  static_assert(kGemvMaxRowsPerPass == 8, "one instantiation per row count below");
  switch (rows) {
    case 1:
      return LaunchPass<T, 1>(p, w, n, nb, xq, xd, xs, y, stream);
    case 2:
      return LaunchPass<T, 2>(p, w, n, nb, xq, xd, xs, y, stream);
    case 3:
      return LaunchPass<T, 3>(p, w, n, nb, xq, xd, xs, y, stream);
    case 4:
      return LaunchPass<T, 4>(p, w, n, nb, xq, xd, xs, y, stream);
    case 5:
      return LaunchPass<T, 5>(p, w, n, nb, xq, xd, xs, y, stream);
    case 6:
      return LaunchPass<T, 6>(p, w, n, nb, xq, xd, xs, y, stream);
    case 7:
      return LaunchPass<T, 7>(p, w, n, nb, xq, xd, xs, y, stream);
    default:
      return LaunchPass<T, 8>(p, w, n, nb, xq, xd, xs, y, stream);
  }
}

}  // namespace

cudaError_t LaunchGemvQuant(QuantType type, const void* w, int64_t n, int64_t k, const int8_t* xq,
                            const float* xd, const float* xs, int64_t m, float* y, int sm_count,
                            cudaStream_t stream) {
  if (m < 0 || n < 0 || k <= 0 || k % 32 != 0 || k / 32 > 0x7FFFFFFF) {
    return cudaErrorInvalidValue;
  }
  if (m == 0 || n == 0) return cudaSuccess;
  const int nb = static_cast<int>(k / 32);
  const GemvPlan plan = PlanGemv(QuantBlockBytes(type), n, nb, sm_count);
  if (plan.ctas > 0x7FFFFFFF) return cudaErrorInvalidValue;
  const auto* wb = static_cast<const uint8_t*>(w);
  // Passes of up to kGemvMaxRowsPerPass activation rows; each streams W once.
  for (int64_t m0 = 0; m0 < m; m0 += kGemvMaxRowsPerPass) {
    const int rows = static_cast<int>(std::min<int64_t>(kGemvMaxRowsPerPass, m - m0));
    const int8_t* xq_p = xq + m0 * k;
    const float* xd_p = xd + m0 * nb;
    const float* xs_p = xs != nullptr ? xs + m0 * nb : nullptr;
    float* y_p = y + m0 * n;
    switch (type) {
      case QuantType::kQ8_0:
        LaunchPassForRows<QuantType::kQ8_0>(rows, plan, wb, n, nb, xq_p, xd_p, xs_p, y_p, stream);
        break;
      case QuantType::kQ4_0:
        LaunchPassForRows<QuantType::kQ4_0>(rows, plan, wb, n, nb, xq_p, xd_p, xs_p, y_p, stream);
        break;
      case QuantType::kQ4_1:
        LaunchPassForRows<QuantType::kQ4_1>(rows, plan, wb, n, nb, xq_p, xd_p, xs_p, y_p, stream);
        break;
    }
    if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

}  // namespace anvil::cuda
