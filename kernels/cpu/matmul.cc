// CPU matmul driver: validates the call, prepares the activation rows once (quantized to Q8_0/Q8_1
// or rounded to F16/BF16, into a per-thread scratch buffer), then splits the output into
// (weight-row block x activation-row block) units over the thread pool. The per-type register
// tiles live in matmul_*_avx2.cc.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/matmul_kernels.h"

namespace anvil::cpu {
namespace {

// Weight rows per unit: a multiple of every tile kernel's row step (4, 2); the block-sum tile
// takes panels of 16.
constexpr int64_t kUnitRows = 24;
constexpr int64_t kBlockSumUnitRows = 32;
// Activation rows per unit when M is large: a multiple of the row steps (4, 6), and small enough
// that a block of quantized rows stays in L2 while the unit's weight rows stream through L1.
constexpr int64_t kUnitActRows = 96;
// Below this many activation rows, preparing them is not worth waking the pool.
constexpr int64_t kParallelPrepRows = 16;

// Grow-only 64-byte-aligned scratch owned by the calling thread. The pool's workers only read it
// (or write disjoint rows) during the call that handed it out; MatMul is not reentrant.
uint8_t* Scratch(size_t bytes) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < bytes + 64) buf.resize(bytes + 64);
  const auto addr = reinterpret_cast<uintptr_t>(buf.data());
  return buf.data() + ((64 - addr % 64) % 64);
}

size_t RoundUp64(size_t n) { return (n + 63) / 64 * 64; }

// One unit of output: the kernel family for the weight type and the number of activation rows.
void RunTile(DType type, bool block_sum, const TileArgs& t) {
  if (block_sum && BlockElems(type) != 1) {
    if (HasAvx512Vnni()) {
      MatMulBlockSumAvx512(type, t);
    } else {
      MatMulBlockSumPortable(type, t);
    }
    return;
  }
  switch (type) {
    case DType::kF32:
      MatMulTileF32Avx2(t);
      return;
    case DType::kF16:
      MatMulTileF16Avx2(t);
      return;
    case DType::kBF16:
      MatMulTileBf16Avx2(t);
      return;
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
      if (t.m1 - t.m0 == 1) {
        MatMulGemvQuantAvx2(type, t);
      } else if (t.x->group_qs != nullptr) {
        MatMulGemmQuantAvx512(type, t);
      } else {
        MatMulGemmQuantAvx2(type, t);
      }
      return;
  }
}

// Fills `x` for the activation rows of `a`, carving its buffers out of the scratch.
void PrepareActs(ThreadPool* pool, const MatMulArgs& a, bool block_sum, PreparedActs* x) {
  x->k = a.k;
  x->nb = a.k / kQK;
  if (a.w_type == DType::kF32) {
    x->f = a.x;
    return;
  }
  const auto m = static_cast<size_t>(a.m), k = static_cast<size_t>(a.k);
  const auto nb = static_cast<size_t>(x->nb);
  const bool quantized = BlockElems(a.w_type) != 1;
  const size_t qs_bytes = quantized ? RoundUp64(m * k) : 0;
  const size_t d_bytes = quantized ? RoundUp64(m * nb * sizeof(float)) : 0;
  const size_t s_bytes = a.w_type == DType::kQ4_1 ? d_bytes : 0;
  const size_t f_bytes = quantized ? 0 : RoundUp64(m * k * sizeof(float));
  // The AVX-512 prefill tile reads the rows again in groups of 4 (PreparedActs::group_qs).
  const bool grouped = quantized && !block_sum && m >= 2 && HasAvx512Vnni();
  // The block-sum tile: signed weights meet x + 128 (PreparedActs::qs_u8).
  const bool flipped = block_sum && HasAvx512Vnni() &&
                       (a.w_type == DType::kQ8_0 || a.w_type == DType::kQ4_0);
  const size_t u8_bytes = flipped ? RoundUp64(m * k) : 0;
  const size_t groups = (m + kActGroupRows - 1) / kActGroupRows;
  const size_t gq_bytes = grouped ? groups * nb * 128 : 0;
  const size_t gd_bytes = grouped ? groups * nb * 16 * sizeof(float) : 0;
  const size_t gs_bytes = a.w_type == DType::kQ4_1 ? gd_bytes : 0;
  uint8_t* base = Scratch(qs_bytes + d_bytes + s_bytes + f_bytes + gq_bytes + gd_bytes +
                          gs_bytes + u8_bytes);
  auto* qs = reinterpret_cast<int8_t*>(base);
  auto* d = reinterpret_cast<float*>(base + qs_bytes);
  auto* s = reinterpret_cast<float*>(base + qs_bytes + d_bytes);
  auto* f = reinterpret_cast<float*>(base + qs_bytes + d_bytes + s_bytes);
  x->qs = qs;
  x->d = d;
  x->s = s_bytes != 0 ? s : nullptr;
  x->f = f;
  uint8_t* group_base = base + qs_bytes + d_bytes + s_bytes + f_bytes;
  auto* group_qs = group_base;
  auto* group_d = reinterpret_cast<float*>(group_base + gq_bytes);
  auto* group_s = gs_bytes != 0 ? reinterpret_cast<float*>(group_base + gq_bytes + gd_bytes)
                                : nullptr;
  uint8_t* qs_u8 = group_base + gq_bytes + gd_bytes + gs_bytes;
  if (flipped) x->qs_u8 = qs_u8;
  if (grouped) {
    x->group_qs = group_qs;
    x->group_d = group_d;
    x->group_s = group_s;
  }
  const DType t = a.w_type;
  auto prep = [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = a.x + r * a.k;
      int8_t* q = qs + r * a.k;
      float* dr = d + r * x->nb;
      switch (t) {
        case DType::kQ8_0:
        case DType::kQ4_0:
          QuantizeActsQ8_0(xr, a.k, q, dr);
          if (flipped) {
            uint8_t* u = qs_u8 + r * a.k;
            for (int64_t j = 0; j < a.k; ++j) u[j] = static_cast<uint8_t>(q[j]) ^ 0x80;
          }
          break;
        case DType::kQ4_1:
          QuantizeActsQ8_1(xr, a.k, q, dr, s + r * x->nb);
          break;
        case DType::kF16:
          RoundActsF16(xr, a.k, f + r * a.k);
          break;
        case DType::kBF16:
          RoundActsBf16(xr, a.k, f + r * a.k);
          break;
        case DType::kF32:
          break;
      }
    }
  };
  if (grouped) {
    // A group's rows are quantized, then interleaved, by the same thread.
    auto prep_groups = [&](int64_t g0, int64_t g1, int) {
      prep(g0 * kActGroupRows, std::min(a.m, g1 * kActGroupRows), 0);
      InterleaveActGroupsAvx512(t, *x, a.m, g0, g1, group_qs, group_d, group_s);
    };
    const auto n_groups = static_cast<int64_t>(groups);
    if (a.m >= kParallelPrepRows) {
      ParallelFor(pool, n_groups, 1, prep_groups);
    } else {
      prep_groups(0, n_groups, 0);
    }
  } else if (a.m >= kParallelPrepRows) {
    ParallelFor(pool, a.m, 4, prep);
  } else {
    prep(0, a.m, 0);
  }
}

}  // namespace

absl::Status MatMul(ThreadPool* pool, const MatMulArgs& a, MatMulNumerics numerics) {
  return MatMulShared(pool, absl::MakeConstSpan(&a, 1), numerics);
}

absl::Status MatMulShared(ThreadPool* pool, absl::Span<const MatMulArgs> calls,
                          MatMulNumerics numerics) {
  if (calls.empty()) return absl::OkStatus();
  const MatMulArgs& a = calls[0];
  // Entries share x, M, K and the weight type (checked at the dispatch point, kernels/matmul.h).
  for (const MatMulArgs& c : calls) {
    if (c.w == nullptr || c.x == nullptr || c.y == nullptr || c.m < 0 || c.n < 0 || c.k < 0) {
      return absl::InvalidArgumentError("matmul: null pointer or negative shape");
    }
  }
  if (a.k % BlockElems(a.w_type) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("matmul: K=", a.k, " is not a multiple of the ",
                                                   DTypeName(a.w_type), " block size"));
  }
  if (a.m == 0) return absl::OkStatus();

  const bool block_sum = numerics == MatMulNumerics::kBlockSum;
  PreparedActs x;
  PrepareActs(pool, a, block_sum, &x);
  const int64_t unit_rows =
      block_sum && BlockElems(a.w_type) != 1 ? kBlockSumUnitRows : kUnitRows;

  const int64_t row_bytes = a.k / BlockElems(a.w_type) * BlockBytes(a.w_type);
  const int64_t act_rows = a.m <= kUnitActRows ? a.m : kUnitActRows;
  const int64_t m_blocks = (a.m + act_rows - 1) / act_rows;
  // Units of all calls in one numbering: call by call, weight-block-major within a call, so that
  // a thread's contiguous range reuses one block of weight rows across all activation blocks.
  std::vector<int64_t> first_unit(calls.size() + 1, 0);
  for (size_t c = 0; c < calls.size(); ++c) {
    first_unit[c + 1] = first_unit[c] + (calls[c].n + unit_rows - 1) / unit_rows * m_blocks;
  }
  // (The block-sum numerics keep F32 in vec_dot's order for every M: batch-invariant.)
  const bool f32_gemm_order = !block_sum && a.m >= 2 && a.k % 16 == 0;
  ParallelFor(pool, first_unit.back(), 1, [&](int64_t u0, int64_t u1, int) {
    size_t c = 0;
    for (int64_t u = u0; u < u1; ++u) {
      while (u >= first_unit[c + 1]) ++c;
      const MatMulArgs& call = calls[c];
      TileArgs t;
      t.w = static_cast<const uint8_t*>(call.w);
      t.row_bytes = row_bytes;
      t.x = &x;
      t.y = call.y;
      t.ldy = call.n;
      t.n_total = call.n;
      t.f32_gemm_order = f32_gemm_order && call.n % 4 == 0;
      const int64_t v = u - first_unit[c];
      const int64_t nbi = v / m_blocks, mbi = v % m_blocks;
      t.n0 = nbi * unit_rows;
      t.n1 = std::min(call.n, t.n0 + unit_rows);
      t.m0 = mbi * act_rows;
      t.m1 = std::min(a.m, t.m0 + act_rows);
      RunTile(a.w_type, block_sum, t);
    }
  });
  return absl::OkStatus();
}

}  // namespace anvil::cpu
