// Causal grouped-query attention on the GPU, flash style (online softmax, nothing of size S x T
// in memory), in float on the CUDA cores. One kernel serves prefill, chunked prefill and decode:
//
// Rows. For kv head hk the query rows are the T*G pairs (token, query head of the group),
// G = H/Hkv, numbered R = token*G + g (query head hk*G + g); a block takes a tile of 16
// consecutive rows, so the rows sharing one K/V tile include all heads of a group.
// Keys. The block walks its key range in tiles of 32 keys staged in shared memory; row R
// (token past + R/G in absolute position) sees keys 0..past + R/G.
// Splits. When (row tiles x Hkv) blocks cannot fill the GPU (decode: T=1), the key range is cut
// into n_splits pieces, one block each (grid z); each block writes its unnormalized output and
// running (max, sum) to scratch, and a second kernel merges them. With one split the block
// normalizes and writes the output itself.
//
// Warp work per key tile (4 warps x 4 rows): lane j scores key j against the warp's 4 rows
// (16-byte loads when D % 4 == 0; the K tile's row stride is chosen so that the lanes' loads hit
// distinct banks, and the query loads are broadcasts), the warp updates each row's running max
// m and sum l with shuffles, stores the row's p_j in shared memory, then accumulates p_j * V[j]
// with lane owning dims lane, lane+32, ... (V rows zero-padded to a multiple of 32, so head dims
// that are not multiples of 32, e.g. 40, need no branches).
#include <cstdint>

#include "kernels/cuda/launch_ops.h"
#include "kernels/cuda/reduce.cuh"

namespace anvil::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = 4;
constexpr int kTileRows = kWarps * kRowsPerWarp;  // query rows per block
constexpr int kTileKeys = 32;                      // keys per shared-memory tile: one per lane
constexpr int kMinKeysPerSplit = 64;
constexpr int kCombineThreads = kAttentionMaxHeadDim;

// Row stride of the K tile, in floats. Scalar loads: odd, so 32 lanes reading column c of 32
// rows hit 32 banks. 16-byte loads (served a quarter warp at a time): a multiple of 4 with
// stride/4 odd, so 8 lanes cover all 32 banks.
__host__ __device__ inline int KStride(int d, bool vec4) { return vec4 ? (d | 4) : (d | 1); }

// Dynamic shared memory of AttentionTileKernel, in floats: q_s, the K tile, the V tile and p_s,
// each a multiple of 4 floats long, so each starts 16-byte aligned (float4 reads of k_s, q_s and
// p_s need that).
__host__ __device__ inline int AttentionSharedFloats(int d, int dims_per_lane, bool vec4) {
  return kTileRows * d + kTileKeys * KStride(d, vec4) + kTileKeys * dims_per_lane * 32 +
         kTileRows * kTileKeys;
}

// q, out: [t][h][d]; k, v: [past+t][h_kv][d]. Grid: (row tiles, h_kv, n_splits). out may
// alias q: a block reads only its own rows of q, all before it writes them (and with splits the
// output is written by the combine kernel, after every block has finished).
// partials: n_splits == 1: unused; else [n_splits][t*h][d] unnormalized outputs followed by
// [n_splits][t*h][2] (max, sum) pairs. NDL = dims per lane = ceil(d / 32); kVec4: d % 4 == 0.
template <int NDL, bool kVec4>
__global__ void __launch_bounds__(kThreads)
    AttentionTileKernel(const float* q, const float* __restrict__ k,
                        const float* __restrict__ v, float* out, float* __restrict__ partials,
                        int t, int past, int h, int h_kv, int d, float scale, int split_keys,
                        int n_splits) {
  constexpr int kVStride = NDL * 32;
  extern __shared__ float smem[];
  const int ks = KStride(d, kVec4);
  float* q_s = smem;                         // [kTileRows][d]
  float* k_s = q_s + kTileRows * d;          // [kTileKeys][ks]
  float* v_s = k_s + kTileKeys * ks;         // [kTileKeys][kVStride], dims >= d zero
  float* p_s = v_s + kTileKeys * kVStride;   // [kTileRows][kTileKeys]: p of the current tile

  const int group = h / h_kv;
  const int n_rows = t * group;
  const int hk = blockIdx.y;
  const int row0 = blockIdx.x * kTileRows;
  const int split = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int warp_row0 = warp * kRowsPerWarp;  // within the tile
  float* p_w = p_s + warp_row0 * kTileKeys;   // this warp's rows of p_s

  for (int idx = threadIdx.x; idx < kTileRows * d; idx += kThreads) {
    const int r = idx / d, c = idx - r * d;
    const int row = row0 + r;
    float val = 0.0f;
    if (row < n_rows) {
      const int tok = row / group, head = hk * group + row % group;
      val = q[(static_cast<int64_t>(tok) * h + head) * d + c];
    }
    q_s[r * d + c] = val;
  }
  if (d < kVStride) {
    const int pad = kVStride - d;
    for (int idx = threadIdx.x; idx < kTileKeys * pad; idx += kThreads) {
      const int j = idx / pad;
      v_s[j * kVStride + d + (idx - j * pad)] = 0.0f;
    }
  }

  // Last visible key of each of this warp's rows (-1: the row is past the end).
  int limit[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int row = row0 + warp_row0 + rr;
    limit[rr] = row < n_rows ? past + row / group : -1;
  }
  const int last_row = min(row0 + kTileRows, n_rows) - 1;
  const int key_lo = split * split_keys;
  const int key_hi = min(min(past + t, key_lo + split_keys), past + last_row / group + 1);
  const bool warp_active = row0 + warp_row0 < n_rows;

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][NDL];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    m[rr] = -INFINITY;
    l[rr] = 0.0f;
#pragma unroll
    for (int i = 0; i < NDL; ++i) acc[rr][i] = 0.0f;
  }

  for (int kt = key_lo; kt < key_hi; kt += kTileKeys) {
    const int n_keys = min(kTileKeys, key_hi - kt);
    __syncthreads();  // the previous tile is consumed (first time: q_s and the padding are set)
    for (int idx = threadIdx.x; idx < kTileKeys * d; idx += kThreads) {
      const int j = idx / d, c = idx - j * d;
      float kval = 0.0f, vval = 0.0f;
      if (j < n_keys) {
        const int64_t off = (static_cast<int64_t>(kt + j) * h_kv + hk) * d + c;
        kval = k[off];
        vval = v[off];
      }
      k_s[j * ks + c] = kval;
      v_s[j * kVStride + c] = vval;
    }
    __syncthreads();
    if (!warp_active) continue;  // warp-uniform; the barriers above stay matched

    // Scores: lane j against key kt + j.
    float s[kRowsPerWarp];
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) s[rr] = 0.0f;
    const float* k_row = k_s + lane * ks;
    const float* q_rows = q_s + warp_row0 * d;
    if constexpr (kVec4) {
      const int d4 = d / 4;
      const float4* k4 = reinterpret_cast<const float4*>(k_row);
      const float4* q4 = reinterpret_cast<const float4*>(q_rows);
      for (int c = 0; c < d4; ++c) {
        const float4 kc = k4[c];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
          const float4 qc = q4[rr * d4 + c];
          s[rr] = fmaf(qc.x, kc.x, s[rr]);
          s[rr] = fmaf(qc.y, kc.y, s[rr]);
          s[rr] = fmaf(qc.z, kc.z, s[rr]);
          s[rr] = fmaf(qc.w, kc.w, s[rr]);
        }
      }
    } else {
      for (int c = 0; c < d; ++c) {
        const float kc = k_row[c];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) s[rr] = fmaf(q_rows[rr * d + c], kc, s[rr]);
      }
    }

    // Online softmax update; m and l come out of butterfly reductions, so they are the same in
    // every lane and the branch below is warp-uniform.
    const int key = kt + lane;
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const bool visible = lane < n_keys && key <= limit[rr];
      const float sc = visible ? __fmul_rn(s[rr], scale) : -INFINITY;
      const float m_new = fmaxf(m[rr], WarpMax(sc));
      float alpha = 1.0f, p = 0.0f;
      if (m_new != -INFINITY) {
        p = expf(__fsub_rn(sc, m_new));         // 0 for masked keys
        alpha = expf(__fsub_rn(m[rr], m_new));  // 0 while m was -inf
      }
      l[rr] = __fadd_rn(__fmul_rn(l[rr], alpha), WarpSum(p));
      m[rr] = m_new;
      p_w[rr * kTileKeys + lane] = p;
#pragma unroll
      for (int i = 0; i < NDL; ++i) acc[rr][i] *= alpha;
    }
    __syncwarp();  // p_w is complete

    // acc += p_j * V[j], four keys at a time: keys past n_keys have p = 0 and zero V rows.
    const int n_keys4 = (n_keys + 3) & ~3;
    for (int j = 0; j < n_keys4; j += 4) {
      float4 pj[kRowsPerWarp];
#pragma unroll
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        pj[rr] = *reinterpret_cast<const float4*>(p_w + rr * kTileKeys + j);  // broadcast
      }
      const float* v_row = v_s + j * kVStride + lane;
#pragma unroll
      for (int i = 0; i < NDL; ++i) {
        const float v0 = v_row[32 * i], v1 = v_row[kVStride + 32 * i],
                    v2 = v_row[2 * kVStride + 32 * i], v3 = v_row[3 * kVStride + 32 * i];
#pragma unroll
        for (int rr = 0; rr < kRowsPerWarp; ++rr) {
          float a = acc[rr][i];
          a = fmaf(pj[rr].x, v0, a);
          a = fmaf(pj[rr].y, v1, a);
          a = fmaf(pj[rr].z, v2, a);
          a = fmaf(pj[rr].w, v3, a);
          acc[rr][i] = a;
        }
      }
    }
    __syncwarp();  // p_w is read before the next tile overwrites it
  }

  if (!warp_active) return;
  const int64_t out_rows = static_cast<int64_t>(t) * h;
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int row = row0 + warp_row0 + rr;
    if (row >= n_rows) continue;
    const int tok = row / group, head = hk * group + row % group;
    const int64_t orow = static_cast<int64_t>(tok) * h + head;
    if (n_splits == 1) {
      float* o = out + orow * d;
#pragma unroll
      for (int i = 0; i < NDL; ++i) {
        const int c = lane + 32 * i;
        if (c < d) o[c] = l[rr] > 0.0f ? __fdiv_rn(acc[rr][i], l[rr]) : 0.0f;
      }
    } else {
      const int64_t prow = static_cast<int64_t>(split) * out_rows + orow;
      float* po = partials + prow * d;
#pragma unroll
      for (int i = 0; i < NDL; ++i) {
        const int c = lane + 32 * i;
        if (c < d) po[c] = acc[rr][i];
      }
      if (lane == 0) {
        float* ml = partials + static_cast<int64_t>(n_splits) * out_rows * d + prow * 2;
        ml[0] = m[rr];
        ml[1] = l[rr];
      }
    }
  }
}

// Merges the splits of AttentionTileKernel: out = sum_z acc_z e^(m_z - M) / sum_z l_z e^(m_z - M)
// with M the largest m_z of the splits that saw a key (l_z > 0). partials as there; out:
// [out_rows][d]. One block per output row, one thread per dim.
__global__ void __launch_bounds__(kCombineThreads)
    AttentionCombineKernel(const float* __restrict__ partials, float* __restrict__ out,
                           int64_t out_rows, int d, int n_splits) {
  const int64_t orow = blockIdx.x;
  const float* ml = partials + static_cast<int64_t>(n_splits) * out_rows * d;
  float mx = -INFINITY;
  for (int z = 0; z < n_splits; ++z) {
    const int64_t prow = z * out_rows + orow;
    if (ml[prow * 2 + 1] > 0.0f) mx = fmaxf(mx, ml[prow * 2]);
  }
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float num = 0.0f, den = 0.0f;
    for (int z = 0; z < n_splits; ++z) {
      const int64_t prow = z * out_rows + orow;
      const float lz = ml[prow * 2 + 1];
      if (lz > 0.0f) {
        const float w = expf(__fsub_rn(ml[prow * 2], mx));
        den = fmaf(lz, w, den);
        num = fmaf(partials[prow * d + c], w, num);
      }
    }
    out[orow * d + c] = den > 0.0f ? __fdiv_rn(num, den) : 0.0f;
  }
}

template <int NDL, bool kVec4>
cudaError_t LaunchTiles(const float* q, const float* k, const float* v, float* out,
                        float* partials, int t, int past, int h, int h_kv, int d, float scale,
                        const AttentionPlan& plan, cudaStream_t stream) {
  const int n_rows = t * (h / h_kv);
  const dim3 grid(static_cast<unsigned>((n_rows + kTileRows - 1) / kTileRows),
                  static_cast<unsigned>(h_kv), static_cast<unsigned>(plan.n_splits));
  const size_t shared =
      static_cast<size_t>(AttentionSharedFloats(d, NDL, kVec4)) * sizeof(float);
  AttentionTileKernel<NDL, kVec4><<<grid, kThreads, shared, stream>>>(
      q, k, v, out, partials, t, past, h, h_kv, d, scale, plan.split_keys, plan.n_splits);
  return cudaGetLastError();
}

}  // namespace

AttentionPlan PlanAttention(int64_t t, int64_t past, int64_t h, int64_t h_kv, int64_t d,
                            int sm_count) {
  AttentionPlan plan;
  const int64_t s = past + t;
  const int64_t tiles = (t * (h / h_kv) + kTileRows - 1) / kTileRows;
  const int64_t blocks = tiles * h_kv;
  const int64_t target = 2 * static_cast<int64_t>(sm_count > 0 ? sm_count : 1);
  int64_t n = 1;
  if (blocks < target) {
    n = (target + blocks - 1) / blocks;
    const int64_t max_splits = (s + kMinKeysPerSplit - 1) / kMinKeysPerSplit;
    if (n > max_splits) n = max_splits;
    if (n < 1) n = 1;
  }
  // Keys per split: a whole number of key tiles; then drop splits that would start past S.
  int64_t keys = (s + n - 1) / n;
  keys = (keys + kTileKeys - 1) / kTileKeys * kTileKeys;
  n = (s + keys - 1) / keys;
  plan.n_splits = static_cast<int>(n);
  plan.split_keys = static_cast<int>(keys);
  plan.partial_floats = n > 1 ? n * t * h * (d + 2) : 0;
  return plan;
}

cudaError_t LaunchAttention(const float* q, const float* k, const float* v, float* out,
                            int64_t t, int64_t past, int64_t h, int64_t h_kv, int64_t d,
                            float scale, const AttentionPlan& plan, float* partials,
                            cudaStream_t stream) {
  const int ti = static_cast<int>(t), pi = static_cast<int>(past), hi = static_cast<int>(h),
            hkv = static_cast<int>(h_kv), di = static_cast<int>(d);
  const bool vec4 = d % 4 == 0;
#define ANVIL_ATTENTION_TILES(NDL)                                                           \
  (vec4 ? LaunchTiles<NDL, true>(q, k, v, out, partials, ti, pi, hi, hkv, di, scale, plan,  \
                                 stream)                                                    \
        : LaunchTiles<NDL, false>(q, k, v, out, partials, ti, pi, hi, hkv, di, scale, plan, \
                                  stream))
  cudaError_t err = cudaErrorInvalidValue;
  switch ((d + 31) / 32) {
    case 1:
      err = ANVIL_ATTENTION_TILES(1);
      break;
    case 2:
      err = ANVIL_ATTENTION_TILES(2);
      break;
    case 3:
      err = ANVIL_ATTENTION_TILES(3);
      break;
    case 4:
      err = ANVIL_ATTENTION_TILES(4);
      break;
    default:
      return cudaErrorInvalidValue;
  }
#undef ANVIL_ATTENTION_TILES
  if (err != cudaSuccess || plan.n_splits == 1) return err;
  AttentionCombineKernel<<<static_cast<unsigned>(t * h), kCombineThreads, 0, stream>>>(
      partials, out, t * h, di, plan.n_splits);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
