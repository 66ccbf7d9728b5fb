// CPU layer ops against the reference: RmsNorm, Rope (both modes), SwiGlu, AddInPlace, GetRows
// and Attention must be bit-identical (llama.cpp's order). Attention covers decode (T=1, the
// vec_dot P*V order) and prefill (T>=2, tinyBLAS order), long pasts, GQA groups of 3 and 6,
// Hkv=1, head dims that are not multiples of 16 or 8, and 1 to 3 threads.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/layer_ops.h"
#include "kernels/reference/reference.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::BitEqual;
using ::anvil::testing::IsOk;
using ::anvil::testing::MakeWeights;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

#define SKIP_WITHOUT_AVX2() \
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C"

TEST(CpuOps, RmsNormBitIdentical) {
  SKIP_WITHOUT_AVX2();
  ThreadPool pool(2);
  for (auto [t, c] : {std::pair<int64_t, int64_t>{1, 576}, {3, 13}, {17, 1536}, {64, 576}}) {
    const std::vector<float> x = RandomFloats(t * c, 3, -4.0f, 4.0f);
    const std::vector<float> w = RandomFloats(c, 4);
    std::vector<float> want(t * c), got(t * c);
    reference::RmsNorm({x.data(), w.data(), want.data(), t, c, 1e-5f});
    ASSERT_THAT(cpu::RmsNorm(&pool, {x.data(), w.data(), got.data(), t, c, 1e-5f}), IsOk());
    EXPECT_TRUE(BitEqual(got, want)) << "T=" << t << " C=" << c;
    // In place (y aliases x).
    std::vector<float> inplace = x;
    ASSERT_THAT(cpu::RmsNorm(&pool, {inplace.data(), w.data(), inplace.data(), t, c, 1e-5f}),
                IsOk());
    EXPECT_TRUE(BitEqual(inplace, want)) << "in place, T=" << t << " C=" << c;
  }
}

TEST(CpuOps, RopeBitIdentical) {
  SKIP_WITHOUT_AVX2();
  ThreadPool pool(2);
  struct Case {
    int64_t t, h, d, n_rot;
    bool neox;
  };
  for (const Case& c :
       {Case{1, 9, 64, 64, false}, Case{17, 3, 64, 64, false}, Case{5, 2, 64, 64, true},
        Case{4, 3, 24, 16, false}, Case{4, 3, 40, 28, true}, Case{64, 9, 64, 64, true},
        Case{2, 1, 6, 6, false}}) {
    const std::vector<float> x = RandomFloats(c.t * c.h * c.d, 5, -2.0f, 2.0f);
    std::vector<int32_t> pos(c.t);
    for (int64_t i = 0; i < c.t; ++i) pos[i] = static_cast<int32_t>(i * 37 % 2048);
    std::vector<float> want = x, got = x;
    reference::Rope({want.data(), pos.data(), c.t, c.h, c.d, c.n_rot, 10000.0f, c.neox});
    ASSERT_THAT(
        cpu::Rope(&pool, {got.data(), pos.data(), c.t, c.h, c.d, c.n_rot, 10000.0f, c.neox}),
        IsOk());
    EXPECT_TRUE(BitEqual(got, want)) << "T=" << c.t << " H=" << c.h << " D=" << c.d
                                     << " n_rot=" << c.n_rot << " neox=" << c.neox;
  }
}

TEST(CpuOps, SwiGluBitIdentical) {
  SKIP_WITHOUT_AVX2();
  ThreadPool pool(2);
  // The whole range of gates, out to where exp over/underflows, plus random ones.
  std::vector<float> gate;
  for (float g = -300.0f; g <= 300.0f; g += 0.0137f) gate.push_back(g);
  const std::vector<float> more = RandomFloats(100003, 6, -12.0f, 12.0f);
  gate.insert(gate.end(), more.begin(), more.end());
  const int64_t n = static_cast<int64_t>(gate.size());
  const std::vector<float> up = RandomFloats(n, 7, 0.5f, 2.0f);
  std::vector<float> want(n), got(n);
  reference::SwiGlu({gate.data(), up.data(), want.data(), n});
  ASSERT_THAT(cpu::SwiGlu(&pool, {gate.data(), up.data(), got.data(), n}), IsOk());
  EXPECT_TRUE(BitEqual(got, want));
  // In place (out aliases gate), odd length for the tail.
  std::vector<float> inplace(gate.begin(), gate.begin() + 13);
  ASSERT_THAT(cpu::SwiGlu(&pool, {inplace.data(), up.data(), inplace.data(), 13}), IsOk());
  EXPECT_TRUE(BitEqual(inplace, std::vector<float>(want.begin(), want.begin() + 13)));
}

TEST(CpuOps, AddInPlaceBitIdentical) {
  SKIP_WITHOUT_AVX2();
  ThreadPool pool(2);
  for (int64_t n : {1, 7, 576, 300001}) {
    const std::vector<float> x = RandomFloats(n, 8);
    std::vector<float> want = RandomFloats(n, 9), got = want;
    reference::AddInPlace(want.data(), x.data(), n);
    ASSERT_THAT(cpu::AddInPlace(&pool, got.data(), x.data(), n), IsOk());
    EXPECT_TRUE(BitEqual(got, want)) << "n=" << n;
  }
}

TEST(CpuOps, GetRowsBitIdenticalForEveryType) {
  SKIP_WITHOUT_AVX2();
  ThreadPool pool(2);
  const int64_t v = 50;
  for (DType type :
       {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0, DType::kQ4_1}) {
    for (int64_t c : {32, 576}) {
      const std::vector<uint8_t> table = MakeWeights(type, RandomFloats(v * c, 10, -3, 3), v, c);
      const std::vector<int32_t> ids = {0, 49, 7, 7, 23, 1, 48, 30, 2, 11, 12, 13, 14, 15, 16};
      const auto t = static_cast<int64_t>(ids.size());
      std::vector<float> want(t * c), got(t * c);
      reference::GetRows({type, table.data(), ids.data(), want.data(), t, v, c});
      ASSERT_THAT(cpu::GetRows(&pool, {type, table.data(), ids.data(), got.data(), t, v, c}),
                  IsOk());
      EXPECT_TRUE(BitEqual(got, want)) << DTypeName(type) << " C=" << c;
    }
  }
  // Float types allow any C, including a tail shorter than a vector.
  const std::vector<uint8_t> table = MakeWeights(DType::kF16, RandomFloats(3 * 13, 11), 3, 13);
  const std::vector<int32_t> ids = {2, 0};
  std::vector<float> want(26), got(26);
  reference::GetRows({DType::kF16, table.data(), ids.data(), want.data(), 2, 3, 13});
  ASSERT_THAT(cpu::GetRows(&pool, {DType::kF16, table.data(), ids.data(), got.data(), 2, 3, 13}),
              IsOk());
  EXPECT_TRUE(BitEqual(got, want));
}

struct AttnCase {
  int64_t t, past, h, h_kv, d;
};

TEST(CpuOps, AttentionBitIdentical) {
  SKIP_WITHOUT_AVX2();
  for (const AttnCase& c :
       {AttnCase{1, 0, 9, 3, 64}, AttnCase{1, 1500, 9, 3, 64}, AttnCase{17, 0, 9, 3, 64},
        AttnCase{1, 40, 9, 3, 64}, AttnCase{7, 5, 9, 3, 64}, AttnCase{33, 0, 9, 3, 64},
        AttnCase{1, 70, 9, 3, 16}, AttnCase{7, 5, 9, 3, 16}, AttnCase{33, 0, 9, 3, 16},
        AttnCase{64, 5, 9, 3, 64}, AttnCase{7, 3, 4, 1, 64}, AttnCase{5, 9, 6, 2, 20},
        AttnCase{3, 2, 2, 2, 3}, AttnCase{33, 100, 3, 3, 136}, AttnCase{17, 600, 9, 3, 64},
        AttnCase{2, 1100, 12, 2, 32}, AttnCase{4, 0, 12, 2, 64}}) {
    const int64_t s = c.past + c.t;
    const std::vector<float> q = RandomFloats(c.t * c.h * c.d, 12, -2.0f, 2.0f);
    const std::vector<float> k = RandomFloats(s * c.h_kv * c.d, 13, -2.0f, 2.0f);
    const std::vector<float> v = RandomFloats(s * c.h_kv * c.d, 14);
    std::vector<float> want(c.t * c.h * c.d), got1(want.size()), got3(want.size());
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    AttentionArgs a{q.data(), k.data(), v.data(), want.data(), c.t,
                    c.past,   c.h,      c.h_kv,   c.d,         scale};
    reference::Attention(a);
    a.out = got1.data();
    ASSERT_THAT(cpu::Attention(nullptr, a), IsOk());
    const std::string label = "T=" + std::to_string(c.t) + " past=" + std::to_string(c.past) +
                              " H=" + std::to_string(c.h) + " Hkv=" + std::to_string(c.h_kv) +
                              " D=" + std::to_string(c.d);
    EXPECT_TRUE(BitEqual(got1, want)) << label;
    for (int threads : {2, 3}) {
      ThreadPool pool(threads);
      a.out = got3.data();
      ASSERT_THAT(cpu::Attention(&pool, a), IsOk());
      EXPECT_TRUE(BitEqual(got3, got1)) << label << " threads=" << threads;
    }
  }
}

// The same cache split into blocks of `rows` positions stored out of order in a pool (as the
// server's KV blocks are): reference and CPU read it in place with the flat cache's bits. Row
// blocks, transposed blocks (keys in lanes) and transposed F16 blocks (against the flat cache of
// the values rounded to F16).
enum class PagedLayout { kRows, kTransposed, kTransposedF16 };

TEST(CpuOps, PagedAttentionEqualsFlat) {
  SKIP_WITHOUT_AVX2();
  // The lane kernel (transposed 16-row blocks, D % 64 == 0) for query groups of 1 to 8 heads,
  // D of 64 and 128, partial and whole last blocks; the other shapes gather the rows first.
  for (const AttnCase& c :
       {AttnCase{1, 0, 9, 3, 64}, AttnCase{1, 77, 9, 3, 64}, AttnCase{17, 30, 9, 3, 64},
        AttnCase{5, 9, 6, 2, 20}, AttnCase{33, 100, 3, 3, 136}, AttnCase{1, 200, 8, 1, 128},
        AttnCase{3, 47, 4, 2, 64}, AttnCase{1, 15, 5, 5, 64}, AttnCase{2, 62, 10, 2, 64}}) {
    for (int64_t rows : {1, 5, 16}) {
      for (PagedLayout layout :
           {PagedLayout::kRows, PagedLayout::kTransposed, PagedLayout::kTransposedF16}) {
        const bool transposed = layout != PagedLayout::kRows;
        const bool half = layout == PagedLayout::kTransposedF16;
        const int64_t s = c.past + c.t, row = c.h_kv * c.d, blocks = (s + rows - 1) / rows;
        const std::vector<float> q = RandomFloats(c.t * c.h * c.d, 21, -2.0f, 2.0f);
        std::vector<float> k = RandomFloats(s * row, 22, -2.0f, 2.0f);
        std::vector<float> v = RandomFloats(s * row, 23);
        if (half) {
          for (float& x : k) x = HalfToFloat(FloatToHalf(x));
          for (float& x : v) x = HalfToFloat(FloatToHalf(x));
        }
        // Block j of the cache lives in pool slot blocks - 1 - j; the slots past the last row
        // hold NaN (a reused block's stale or never-written rows must not leak in).
        std::vector<float> kpool(blocks * rows * row, NAN), vpool(kpool.size(), NAN);
        std::vector<uint16_t> kpool16(kpool.size(), 0x7E00), vpool16(kpool.size(), 0x7E00);
        std::vector<const float*> kb(blocks), vb(blocks);
        std::vector<const uint16_t*> kb16(blocks), vb16(blocks);
        for (int64_t j = 0; j < blocks; ++j) {
          const int64_t slot = blocks - 1 - j;
          for (int64_t r = 0; r < std::min(rows, s - j * rows); ++r) {
            for (int64_t e = 0; e < row; ++e) {
              // Transposed: [Hkv][D][rows], element e = hk * D + i of the row.
              const int64_t dst = slot * rows * row + (transposed ? e * rows + r : r * row + e);
              kpool[dst] = k[(j * rows + r) * row + e];
              vpool[dst] = v[(j * rows + r) * row + e];
              kpool16[dst] = FloatToHalf(kpool[dst]);
              vpool16[dst] = FloatToHalf(vpool[dst]);
            }
          }
          kb[j] = kpool.data() + slot * rows * row;
          vb[j] = vpool.data() + slot * rows * row;
          kb16[j] = kpool16.data() + slot * rows * row;
          vb16[j] = vpool16.data() + slot * rows * row;
        }
        std::vector<float> want(c.t * c.h * c.d), ref(want.size()), got(want.size());
        const float scale = 1.0f / std::sqrt(static_cast<float>(c.d));
        AttentionArgs flat{q.data(), k.data(), v.data(), want.data(), c.t,
                           c.past,   c.h,      c.h_kv,   c.d,         scale};
        reference::Attention(flat);
        AttentionArgs paged = flat;
        paged.k = paged.v = nullptr;
        if (half) {
          paged.k_blocks_f16 = kb16.data();
          paged.v_blocks_f16 = vb16.data();
        } else {
          paged.k_blocks = kb.data();
          paged.v_blocks = vb.data();
        }
        paged.block_rows = rows;
        paged.blocks_transposed = transposed;
        paged.out = ref.data();
        ASSERT_THAT(Attention({Backend::kReference, nullptr, nullptr}, paged), IsOk());
        ThreadPool pool(2);
        paged.out = got.data();
        ASSERT_THAT(Attention({Backend::kCpu, &pool, nullptr}, paged), IsOk());
        const std::string label = "T=" + std::to_string(c.t) +
                                  " past=" + std::to_string(c.past) +
                                  " D=" + std::to_string(c.d) + " rows=" + std::to_string(rows) +
                                  " layout=" + std::to_string(static_cast<int>(layout));
        EXPECT_TRUE(BitEqual(ref, want)) << label;
        EXPECT_TRUE(BitEqual(got, want)) << label;
        // One sequence at a time, as the server runs decode (no pool).
        std::fill(got.begin(), got.end(), 0.0f);
        ASSERT_THAT(Attention({Backend::kCpu, nullptr, nullptr}, paged), IsOk());
        EXPECT_TRUE(BitEqual(got, want)) << label << " serial";
      }
    }
  }
  AttentionArgs bad{nullptr, nullptr, nullptr, nullptr, 1, 0, 1, 1, 8, 1.0f};
  const float* one = nullptr;
  bad.k_blocks = &one;  // no v_blocks
  EXPECT_THAT(Attention({Backend::kCpu, nullptr, nullptr}, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("v_blocks")));
  bad.v_blocks = &one;  // block_rows 0
  EXPECT_THAT(Attention({Backend::kReference, nullptr, nullptr}, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("block_rows")));
  AttentionArgs bad16{nullptr, nullptr, nullptr, nullptr, 1, 0, 1, 1, 8, 1.0f};
  const uint16_t* one16 = nullptr;
  bad16.k_blocks_f16 = bad16.v_blocks_f16 = &one16;
  bad16.block_rows = 16;  // but not transposed
  EXPECT_THAT(Attention({Backend::kCpu, nullptr, nullptr}, bad16),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("F16 blocks")));
}

}  // namespace
}  // namespace anvil
