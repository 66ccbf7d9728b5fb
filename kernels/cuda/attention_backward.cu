// AttentionBackward on the GPU (layer_ops_backward.h): causal self-attention over one sequence,
// three kernels, one warp per row each (FlashAttention-2's recomputation without its tiling):
//   stats: per query row (t, h), the log-sum-exp of its scaled scores and Delta = dout . out;
//   dq:    per query row, over keys s <= t: p = e^(scale q.k_s - lse), dS = p * (dout.v_s - Delta),
//          dq = scale * sum_s dS k_s;
//   dkdv:  per key row (s, hk), over the group's heads and queries t >= s: dv += p * dout_t,
//          dk += scale * dS * q_t (each warp owns its dk/dv row: no atomics, deterministic).
// Within a warp, the scores of 32 keys (or queries) are computed lane-per-row against the row
// staged in shared memory; the weighted sums then switch to lane-per-dimension (d = lane + 32 i)
// so that the rows are read coalesced. Float throughout, expf/logf within 2 ulp.
#include <cstdint>

#include "kernels/cuda/launch_backward.h"
#include "kernels/cuda/launch_ops.h"
#include "kernels/cuda/reduce.cuh"

namespace anvil::cuda {
namespace {

constexpr int kWarps = 4;                    // warps (rows) per block
constexpr int kMaxD = kAttentionMaxHeadDim;  // 128
constexpr int kPerLane = kMaxD / 32;         // dims per lane in the lane-per-d layout

__device__ __forceinline__ float Dot(const float* a, const float* b, int d) {
  float acc = 0.0f;
  for (int i = 0; i < d; ++i) acc = fmaf(a[i], b[i], acc);
  return acc;
}

// Copies row src ([d]) into the warp's shared slice dst ([kMaxD]); lanes over d.
__device__ __forceinline__ void StageRow(const float* src, float* dst, int d, int lane) {
  for (int i = lane; i < d; i += 32) dst[i] = src[i];
  __syncwarp();
}

// stats: [2][t*h]: lse then Delta per query row. q, out, dout: [t][h][d]; k: [t][h_kv][d].
__global__ void AttentionBackwardStatsWarpPerRowKernel(const float* q, const float* k,
                                                       const float* out, const float* dout,
                                                       float* stats, int t, int h, int h_kv, int d,
                                                       float scale) {
  __shared__ float q_s[kWarps][kMaxD];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= static_cast<int64_t>(t) * h) return;  // warp-uniform; no block barriers below
  const int ti = static_cast<int>(row / h), hh = static_cast<int>(row % h);
  const int hk = hh / (h / h_kv);
  StageRow(q + row * d, q_s[warp], d, lane);
  float m = -INFINITY, l = 0.0f;  // this lane's running max and sum over its keys
  for (int s = lane; s <= ti; s += 32) {
    const float z = scale * Dot(q_s[warp], k + (static_cast<int64_t>(s) * h_kv + hk) * d, d);
    if (z > m) {
      l = l * expf(m - z) + 1.0f;  // expf(-inf) = 0 on the first key
      m = z;
    } else {
      l += expf(z - m);
    }
  }
  const float m_all = WarpMax(m);
  const float l_all = WarpSum(m == -INFINITY ? 0.0f : l * expf(m - m_all));
  float delta = 0.0f;
  for (int i = lane; i < d; i += 32) delta = fmaf(dout[row * d + i], out[row * d + i], delta);
  delta = WarpSum(delta);
  if (lane == 0) {
    stats[row] = m_all + logf(l_all);
    stats[static_cast<int64_t>(t) * h + row] = delta;
  }
}

// dq: [t][h][d], one warp per query row.
__global__ void AttentionBackwardDqWarpPerRowKernel(const float* q, const float* k, const float* v,
                                                    const float* dout, const float* stats,
                                                    float* dq, int t, int h, int h_kv, int d,
                                                    float scale) {
  __shared__ float q_s[kWarps][kMaxD], g_s[kWarps][kMaxD], ds_s[kWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= static_cast<int64_t>(t) * h) return;
  const int ti = static_cast<int>(row / h), hh = static_cast<int>(row % h);
  const int hk = hh / (h / h_kv);
  StageRow(q + row * d, q_s[warp], d, lane);
  StageRow(dout + row * d, g_s[warp], d, lane);
  const float lse = stats[row], delta = stats[static_cast<int64_t>(t) * h + row];
  float acc[kPerLane] = {};
  for (int s0 = 0; s0 <= ti; s0 += 32) {
    const int s = s0 + lane;
    float ds = 0.0f;
    if (s <= ti) {
      const int64_t off = (static_cast<int64_t>(s) * h_kv + hk) * d;
      const float p = expf(scale * Dot(q_s[warp], k + off, d) - lse);
      ds = p * (Dot(g_s[warp], v + off, d) - delta);
    }
    ds_s[warp][lane] = ds;
    __syncwarp();
    const int n = min(32, ti - s0 + 1);
    for (int j = 0; j < n; ++j) {
      const float dsj = ds_s[warp][j];
      const float* kr = k + (static_cast<int64_t>(s0 + j) * h_kv + hk) * d;
#pragma unroll
      for (int i = 0; i < kPerLane; ++i) {
        const int dd = lane + 32 * i;
        if (dd < d) acc[i] = fmaf(dsj, kr[dd], acc[i]);
      }
    }
    __syncwarp();  // ds_s is rewritten by the next chunk
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int dd = lane + 32 * i;
    if (dd < d) dq[row * d + dd] = scale * acc[i];
  }
}

// dk, dv: [t][h_kv][d], one warp per key row (s, hk), over the group's heads and queries >= s.
__global__ void AttentionBackwardDkDvWarpPerKeyKernel(const float* q, const float* k,
                                                      const float* v, const float* dout,
                                                      const float* stats, float* dk, float* dv,
                                                      int t, int h, int h_kv, int d, float scale) {
  __shared__ float k_s[kWarps][kMaxD], v_s[kWarps][kMaxD], p_s[kWarps][32], ds_s[kWarps][32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  if (row >= static_cast<int64_t>(t) * h_kv) return;
  const int s = static_cast<int>(row / h_kv), hk = static_cast<int>(row % h_kv);
  const int group = h / h_kv;
  StageRow(k + row * d, k_s[warp], d, lane);
  StageRow(v + row * d, v_s[warp], d, lane);
  float acc_k[kPerLane] = {}, acc_v[kPerLane] = {};
  for (int hh = hk * group; hh < (hk + 1) * group; ++hh) {
    for (int t0 = s; t0 < t; t0 += 32) {
      const int ti = t0 + lane;
      float p = 0.0f, ds = 0.0f;
      if (ti < t) {
        const int64_t qrow = static_cast<int64_t>(ti) * h + hh;
        p = expf(scale * Dot(q + qrow * d, k_s[warp], d) - stats[qrow]);
        ds = p * (Dot(dout + qrow * d, v_s[warp], d) - stats[static_cast<int64_t>(t) * h + qrow]);
      }
      p_s[warp][lane] = p;
      ds_s[warp][lane] = ds;
      __syncwarp();
      const int n = min(32, t - t0);
      for (int j = 0; j < n; ++j) {
        const float pj = p_s[warp][j], dsj = ds_s[warp][j];
        const int64_t qrow = static_cast<int64_t>(t0 + j) * h + hh;
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
          const int dd = lane + 32 * i;
          if (dd < d) {
            acc_v[i] = fmaf(pj, dout[qrow * d + dd], acc_v[i]);
            acc_k[i] = fmaf(dsj, q[qrow * d + dd], acc_k[i]);
          }
        }
      }
      __syncwarp();
    }
  }
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int dd = lane + 32 * i;
    if (dd < d) {
      dk[row * d + dd] = scale * acc_k[i];
      dv[row * d + dd] = acc_v[i];
    }
  }
}

unsigned Blocks(int64_t rows) { return static_cast<unsigned>((rows + kWarps - 1) / kWarps); }

}  // namespace

cudaError_t LaunchAttentionBackward(const float* q, const float* k, const float* v,
                                    const float* out, const float* dout, float* dq, float* dk,
                                    float* dv, int64_t t, int64_t h, int64_t h_kv, int64_t d,
                                    float scale, float* stats, cudaStream_t stream) {
  const int ti = static_cast<int>(t), hi = static_cast<int>(h), hkv = static_cast<int>(h_kv),
            di = static_cast<int>(d);
  AttentionBackwardStatsWarpPerRowKernel<<<Blocks(t * h), 32 * kWarps, 0, stream>>>(
      q, k, out, dout, stats, ti, hi, hkv, di, scale);
  AttentionBackwardDqWarpPerRowKernel<<<Blocks(t * h), 32 * kWarps, 0, stream>>>(
      q, k, v, dout, stats, dq, ti, hi, hkv, di, scale);
  AttentionBackwardDkDvWarpPerKeyKernel<<<Blocks(t * h_kv), 32 * kWarps, 0, stream>>>(
      q, k, v, dout, stats, dk, dv, ti, hi, hkv, di, scale);
  return cudaGetLastError();
}

}  // namespace anvil::cuda
