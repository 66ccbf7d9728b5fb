// CPU F32 GEMM (kernels/gemm.h) on OpenBLAS sgemm. OpenBLAS runs single-threaded; our persistent
// ThreadPool slices C by rows and each pool thread calls cblas_sgemm on its slice, so no thread
// is created per op and one pool owns all parallelism. The empty, K == 0 and alpha == 0 cases are
// handled here (OpenBLAS rejects a leading dimension of 0 as an illegal argument).
//
// Why our pool and not OpenBLAS's own threads (openblas_set_num_threads(pool threads)): measured
// on the 2-vCPU Sapphire Rapids dev VM (OpenBLAS 0.3.21, core SkylakeX, i.e. AVX-512 kernels),
// 2 threads, M = 512. The VM was shared with other jobs (load average 5 to 100), so:
// - GEMM alone, best call of 15 rounds, GFLOP/s:
//                        OpenBLAS threads   pool, row slices   pool, column slices
//   fwd  N=576  K=576          266               279                 257
//   dx   N=576  K=576          267               277                 262
//   dw   N=576  K=576          256               274                 256
//   fwd  N=1536 K=576          252               272                 266
//   dw   N=1536 K=576          247               271                 235
//   fwd  N=576  K=1536         241               262                 255
//   dx   N=576  K=1536         265               262                 267
// - GEMM alone, whole blocks (bench/gemm_bench.cc): row slices reach only 0.6-0.9 of OpenBLAS's
//   threading at N, K <= 1536 (0.95-1.07 at N=49152). When another process holds one vCPU, the
//   scheduler tends to put both pool threads on the other one (traced: 347 of 350 calls ran
//   their two slices one after the other); OpenBLAS's threads suffer less from that.
// - A training-like step (this fwd GEMM, then a pool op over 1 MB; alternating blocks, median
//   step): row slices 4.00 / 9.28 / 9.34 / 9.35 ms, OpenBLAS threads 5.04 / 9.34 / 10.27 / 9.84
//   ms in four runs. After each threaded call OpenBLAS's workers spin for ~0.1 s (~40 ms of CPU
//   in the 100 ms after one call) and take a core from the pool's next op.
// So row slices on our pool: as fast in uncontended calls, faster within a step, and one
// pool owns every thread. Rows beat columns: each thread writes a contiguous block of C.
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_split_bf16.h"

namespace anvil::cpu {
namespace {

// Slices are multiples of 16 rows (or columns): OpenBLAS's AVX-512 sgemm micro-kernel is 16 wide.
constexpr int64_t kSliceGrain = 16;
// Below this many multiply-adds per thread, waking the pool costs more than it saves.
constexpr int64_t kMinMacsPerThread = int64_t{1} << 18;

// C = beta * C without reading C when beta == 0 (it may hold NaN).
void ScaleC(const GemmArgs& g) {
  for (int64_t i = 0; i < g.m; ++i) {
    float* c = g.c + i * g.ldc;
    if (g.beta == 0.0f) {
      std::fill(c, c + g.n, 0.0f);
    } else if (g.beta != 1.0f) {
      for (int64_t j = 0; j < g.n; ++j) c[j] *= g.beta;
    }
  }
}

// One sgemm on rows [i0, i1) and columns [j0, j1) of C.
void SgemmSlice(const GemmArgs& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  // Row i of op(A) starts at A + i*lda, or at column i of A when transposed; column j of op(B)
  // starts at B + j, or at row j of B when transposed.
  const float* a = g.a + (g.trans_a ? i0 : i0 * g.lda);
  const float* b = g.b + (g.trans_b ? j0 * g.ldb : j0);
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans,
              g.trans_b ? CblasTrans : CblasNoTrans, static_cast<int>(i1 - i0),
              static_cast<int>(j1 - j0), static_cast<int>(g.k), g.alpha, a, static_cast<int>(g.lda),
              b, static_cast<int>(g.ldb), g.beta, g.c + i0 * g.ldc + j0, static_cast<int>(g.ldc));
}

}  // namespace

const char* GemmEngineName() { return HasAmxBf16() ? "split-bf16 AMX" : "OpenBLAS sgemm"; }

absl::Status Gemm(ThreadPool* pool, const GemmArgs& g) {
  for (int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc}) {
    if (v > INT_MAX) {
      return absl::UnimplementedError(absl::StrCat(
          "gemm: cpu backend (OpenBLAS, 32-bit indices) needs sizes and leading dimensions <= ",
          INT_MAX, ", got M=", g.m, " N=", g.n, " K=", g.k, " lda=", g.lda, " ldb=", g.ldb,
          " ldc=", g.ldc));
    }
  }
  if (g.m == 0 || g.n == 0) return absl::OkStatus();
  if (g.k == 0 || g.alpha == 0.0f) {
    ScaleC(g);
    return absl::OkStatus();
  }
  if (SplitBf16GemmApplies(g)) return SplitBf16Gemm(pool, g);
  // The thread count is process-wide state of OpenBLAS; set it back if anyone (a benchmark's
  // baseline) changed it, or every slice would fan out to OpenBLAS's own threads.
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
  const int threads = pool == nullptr ? 1 : pool->num_threads();
  const int64_t slices =
      std::min<int64_t>(threads, std::max<int64_t>(1, g.m * g.n * g.k / kMinMacsPerThread));
  if (slices == 1) {
    SgemmSlice(g, 0, g.m, 0, g.n);
    return absl::OkStatus();
  }
  // Slice rows unless C is too short for every slice to get kSliceGrain of them (M = 1..31 with
  // a long N), then columns.
  const bool by_rows = g.m >= slices * kSliceGrain || g.m >= g.n;
  const int64_t len = by_rows ? g.m : g.n;
  // With fewer slices than threads, the grain is one slice's share (rounded to kSliceGrain).
  const int64_t grain =
      slices == threads
          ? kSliceGrain
          : ((len + slices - 1) / slices + kSliceGrain - 1) / kSliceGrain * kSliceGrain;
  pool->ParallelFor(len, grain, [&](int64_t b, int64_t e, int) {
    if (by_rows) {
      SgemmSlice(g, b, e, 0, g.n);
    } else {
      SgemmSlice(g, 0, g.m, b, e);
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
