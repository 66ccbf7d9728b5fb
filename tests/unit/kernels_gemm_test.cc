// F32 GEMM (kernels/gemm.h): the reference against hand-computed products (exact), every
// transpose combination, alpha/beta (beta == 0 never reads C), leading dimensions wider than the
// matrices (the padding is NaN and must not be read or written), M/N/K = 1 and odd sizes; the CPU
// backend (OpenBLAS) against the reference within atol + rtol * sum|terms| on 1 to 3 threads; and
// the dispatcher's error codes.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/gemm.h"
#include "kernels/reference/reference.h"
#include "tests/testing/kernel_check.h"
#include "tests/testing/status_matchers.h"

namespace anvil {
namespace {

using ::anvil::testing::AllClose;
using ::anvil::testing::BitEqual;
using ::anvil::testing::IsOk;
using ::anvil::testing::RandomFloats;
using ::anvil::testing::StatusIs;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Builds with -DANVIL_OPENBLAS=OFF have a CPU Gemm that answers Unimplemented.
#ifdef ANVIL_OPENBLAS
constexpr bool kHaveOpenBlas = true;
#else
constexpr bool kHaveOpenBlas = false;
#endif

#define SKIP_WITHOUT_CPU_GEMM()                                                 \
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";             \
  if (!kHaveOpenBlas) GTEST_SKIP() << "built without OpenBLAS (ANVIL_OPENBLAS=OFF)"

// A row-major matrix [rows][ld] whose columns past `cols` hold `pad` (NaN: never read).
struct Matrix {
  int64_t rows, cols, ld;
  std::vector<float> data;
};

Matrix MakeMatrix(int64_t rows, int64_t cols, int64_t pad_cols, const std::vector<float>& values,
                  float pad = kNaN) {
  Matrix m{rows, cols, cols + pad_cols, {}};
  m.data.assign(static_cast<size_t>(rows * m.ld), pad);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) m.data[r * m.ld + c] = values[r * cols + c];
  }
  return m;
}

// The [rows][cols] values of `m` without its padding.
std::vector<float> Unpad(const Matrix& m) {
  std::vector<float> v;
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = 0; c < m.cols; ++c) v.push_back(m.data[r * m.ld + c]);
  }
  return v;
}

// True when every padding element of `m` is still NaN.
bool PaddingUntouched(const Matrix& m) {
  for (int64_t r = 0; r < m.rows; ++r) {
    for (int64_t c = m.cols; c < m.ld; ++c) {
      if (!std::isnan(m.data[r * m.ld + c])) return false;
    }
  }
  return true;
}

// Stores op(X) = `values` ([rows][cols]) either as is or, when `trans`, as X = values^T.
Matrix StoreOperand(bool trans, int64_t rows, int64_t cols, int64_t pad,
                    const std::vector<float>& values) {
  if (!trans) return MakeMatrix(rows, cols, pad, values);
  std::vector<float> t(values.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) t[c * rows + r] = values[r * cols + c];
  }
  return MakeMatrix(cols, rows, pad, t);
}

GemmArgs Args(bool trans_a, bool trans_b, const Matrix& a, const Matrix& b, Matrix& c, int64_t k,
              float alpha, float beta) {
  GemmArgs g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.m = c.rows;
  g.n = c.cols;
  g.k = k;
  g.alpha = alpha;
  g.a = a.data.data();
  g.lda = a.ld;
  g.b = b.data.data();
  g.ldb = b.ld;
  g.beta = beta;
  g.c = c.data.data();
  g.ldc = c.ld;
  return g;
}

// op(A) [2][3] and op(B) [3][2] with integer entries: every product and sum is exact in float.
const std::vector<float> kSmallA = {1, 2, 3, 4, 5, 6};
const std::vector<float> kSmallB = {7, 8, 9, 10, 11, 12};
const std::vector<float> kSmallC0 = {1, 2, 3, 4};

struct SmallCase {
  float alpha, beta;
  std::vector<float> c0;  // [2][2] C before the op (NaN: must not be read)
  std::vector<float> want;
};

const std::vector<SmallCase>& SmallCases() {
  static const auto* cases = new std::vector<SmallCase>{
      {1.0f, 0.0f, {kNaN, kNaN, kNaN, kNaN}, {58, 64, 139, 154}},
      {2.0f, -1.0f, kSmallC0, {115, 126, 275, 304}},
      {0.5f, 1.0f, kSmallC0, {30, 34, 72.5f, 81}},
      {-1.0f, 0.0f, kSmallC0, {-58, -64, -139, -154}},
  };
  return *cases;
}

// Runs the hand-computed cases on `backend` in every transpose combination, with padded leading
// dimensions, and demands the exact result.
void ExpectSmallCasesExact(Backend backend) {
  ThreadPool pool(2);
  const ExecContext ctx{backend, &pool};
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      for (const SmallCase& sc : SmallCases()) {
        const Matrix a = StoreOperand(ta, 2, 3, /*pad=*/2, kSmallA);
        const Matrix b = StoreOperand(tb, 3, 2, /*pad=*/1, kSmallB);
        Matrix c = MakeMatrix(2, 2, /*pad_cols=*/3, sc.c0);
        const std::string what = absl::StrCat("trans_a=", ta, " trans_b=", tb,
                                              " alpha=", sc.alpha, " beta=", sc.beta);
        ASSERT_THAT(Gemm(ctx, Args(ta, tb, a, b, c, 3, sc.alpha, sc.beta)), IsOk()) << what;
        EXPECT_TRUE(BitEqual(Unpad(c), sc.want)) << what;
        EXPECT_TRUE(PaddingUntouched(c)) << what;
      }
    }
  }
}

TEST(GemmReference, HandComputedExact) { ExpectSmallCasesExact(Backend::kReference); }

TEST(GemmCpu, HandComputedExact) {
  SKIP_WITHOUT_CPU_GEMM();
  ExpectSmallCasesExact(Backend::kCpu);
}

TEST(GemmReference, OneByOneByOne) {
  const std::vector<float> a = {3.0f}, b = {-4.0f};
  std::vector<float> c = {kNaN};
  reference::Gemm({false, false, 1, 1, 1, 0.5f, a.data(), 1, b.data(), 1, 0.0f, c.data(), 1});
  EXPECT_TRUE(BitEqual(c, {-6.0f}));
}

// Outer product (K = 1) and dot product (M = N = 1), both with transposes that make the
// operands strided.
TEST(GemmReference, OuterAndInnerProducts) {
  const std::vector<float> x = {1, 2, 3}, y = {4, 5};
  std::vector<float> outer(6, kNaN);
  // x as A^T [K=1][M=3] (trans_a), y as B^T [N=2][K=1] (trans_b).
  reference::Gemm({true, true, 3, 2, 1, 1.0f, x.data(), 3, y.data(), 1, 0.0f, outer.data(), 2});
  EXPECT_TRUE(BitEqual(outer, {4, 5, 8, 10, 12, 15}));
  const std::vector<float> u = {1, 2, 3}, v = {4, 5, 6};
  std::vector<float> dot = {kNaN};
  // u as A [1][3], v as B [K=3][N=1] with ldb 1.
  reference::Gemm({false, false, 1, 1, 3, 1.0f, u.data(), 3, v.data(), 1, 0.0f, dot.data(), 1});
  EXPECT_TRUE(BitEqual(dot, {32}));
}

// The reference sums in double and rounds once: 1e8 + 1 - 1e8 is 1, where a float sum in index
// order would give 0.
TEST(GemmReference, SumsInDouble) {
  const std::vector<float> a = {1e8f, 1.0f, -1e8f}, b = {1.0f, 1.0f, 1.0f};
  std::vector<float> c = {0.0f};
  reference::Gemm({false, false, 1, 1, 3, 1.0f, a.data(), 3, b.data(), 1, 0.0f, c.data(), 1});
  EXPECT_TRUE(BitEqual(c, {1.0f}));
}

// K == 0 and alpha == 0 leave C = beta * C and never read A or B (here NaN).
TEST(GemmReference, EmptyProductScalesC) {
  const std::vector<float> nan_ab(6, kNaN);
  for (float beta : {0.0f, 0.5f}) {
    std::vector<float> c = {2, 4, 6, 8};
    reference::Gemm({false, false, 2, 2, 0, 1.0f, nan_ab.data(), 0, nan_ab.data(), 2, beta,
                     c.data(), 2});
    EXPECT_TRUE(BitEqual(c, {2 * beta, 4 * beta, 6 * beta, 8 * beta})) << "K=0 beta=" << beta;
    c = {2, 4, 6, 8};
    reference::Gemm({false, false, 2, 2, 3, 0.0f, nan_ab.data(), 3, nan_ab.data(), 2, beta,
                     c.data(), 2});
    EXPECT_TRUE(BitEqual(c, {2 * beta, 4 * beta, 6 * beta, 8 * beta})) << "alpha=0 beta=" << beta;
  }
}

TEST(GemmCpu, EmptyProductScalesC) {
  SKIP_WITHOUT_CPU_GEMM();
  ThreadPool pool(2);
  const std::vector<float> nan_ab(6, kNaN);
  std::vector<float> c = {kNaN, kNaN, kNaN, kNaN};
  ASSERT_THAT(cpu::Gemm(&pool, {false, false, 2, 2, 0, 1.0f, nan_ab.data(), 0, nan_ab.data(), 2,
                                0.0f, c.data(), 2}),
              IsOk());
  EXPECT_TRUE(BitEqual(c, {0, 0, 0, 0}));
  c = {2, 4, 6, 8};
  ASSERT_THAT(cpu::Gemm(&pool, {true, true, 2, 2, 3, 0.0f, nan_ab.data(), 2, nan_ab.data(), 3,
                                -0.5f, c.data(), 2}),
              IsOk());
  EXPECT_TRUE(BitEqual(c, {-1, -2, -3, -4}));
}

struct Shape {
  int64_t m, n, k;
};

// CPU (OpenBLAS, float accumulation) against the reference (double accumulation), element-wise
// within atol + rtol * (|alpha| * sum_p |a_ip * b_pj| + |beta * c_ij|). A float sum of K terms
// can be off by K * 2^-24 * sum|terms| at worst (9e-5 at K = 1536); blocked FMA sums stay near
// sqrt(K) * 2^-24 (the worst seen here is 2.4e-7), so 1e-5 leaves room and still catches a
// wrong or missing term (an error of order sum|terms| / K).
TEST(GemmCpu, MatchesReference) {
  SKIP_WITHOUT_CPU_GEMM();
  // Odd and unit sizes; {300,40,200}, {513,577,129} and {48,64,200} (fewer slices than threads)
  // take the row-slice path, {1,1536,576}, {17,1000,64} and {40,300,200} on 3 threads columns.
  const Shape shapes[] = {{1, 1, 1},     {1, 1536, 576}, {7, 13, 5},    {513, 577, 129},
                          {1, 1, 1536},  {64, 1, 64},    {1, 64, 1},    {300, 40, 200},
                          {40, 300, 200}, {48, 64, 200}, {33, 17, 1},   {17, 1000, 64}};
  struct Scalars {
    float alpha, beta;
  };
  const Scalars scalars[] = {{1.0f, 0.0f}, {0.75f, -0.5f}};
  std::vector<ThreadPool*> pools = {nullptr};
  ThreadPool pool1(1), pool2(2), pool3(3);
  pools.insert(pools.end(), {&pool1, &pool2, &pool3});
  uint32_t seed = 1;
  for (const Shape& s : shapes) {
    for (int combo = 0; combo < 4; ++combo) {
      const bool ta = combo & 1, tb = combo & 2;
      const Scalars& sc = scalars[(combo + s.m) % 2];  // both for every shape
      const int64_t pad = (combo + s.k) % 3 == 0 ? 0 : 5;
      const std::vector<float> av = RandomFloats(s.m * s.k, ++seed);
      const std::vector<float> bv = RandomFloats(s.k * s.n, ++seed);
      const std::vector<float> c0 = RandomFloats(s.m * s.n, ++seed);
      const Matrix a = StoreOperand(ta, s.m, s.k, pad, av);
      const Matrix b = StoreOperand(tb, s.k, s.n, pad + 1, bv);
      // beta == 0: C starts as NaN, which must not leak into the result.
      const std::vector<float> c_init =
          sc.beta == 0.0f ? std::vector<float>(c0.size(), kNaN) : c0;
      Matrix want = MakeMatrix(s.m, s.n, pad, c_init);
      reference::Gemm(Args(ta, tb, a, b, want, s.k, sc.alpha, sc.beta));
      // Scale: |alpha| * sum|terms| + |beta * c|, from the unpadded values.
      std::vector<float> scale(static_cast<size_t>(s.m * s.n));
      for (int64_t i = 0; i < s.m; ++i) {
        for (int64_t j = 0; j < s.n; ++j) {
          double sum = 0.0;
          for (int64_t p = 0; p < s.k; ++p) sum += std::fabs(av[i * s.k + p] * bv[p * s.n + j]);
          const double bc = sc.beta == 0.0f ? 0.0 : std::fabs(sc.beta * c0[i * s.n + j]);
          scale[i * s.n + j] = static_cast<float>(std::fabs(sc.alpha) * sum + bc);
        }
      }
      for (ThreadPool* pool : pools) {
        const std::string what = absl::StrCat(
            "M=", s.m, " N=", s.n, " K=", s.k, " trans_a=", ta, " trans_b=", tb,
            " alpha=", sc.alpha, " beta=", sc.beta, " pad=", pad,
            " threads=", pool == nullptr ? 0 : pool->num_threads());
        Matrix got = MakeMatrix(s.m, s.n, pad, c_init);
        ASSERT_THAT(cpu::Gemm(pool, Args(ta, tb, a, b, got, s.k, sc.alpha, sc.beta)), IsOk())
            << what;
        EXPECT_TRUE(AllClose(Unpad(got), Unpad(want), 1e-6, 1e-5, &scale)) << what;
        EXPECT_TRUE(PaddingUntouched(got)) << what;
      }
    }
  }
}

// Error codes come from the public entry point (the dispatcher checks before any backend runs).
TEST(GemmDispatch, InvalidArguments) {
  ThreadPool pool(2);
  const ExecContext ctx{Backend::kCpu, &pool};
  std::vector<float> a(64, 1.0f), b(64, 1.0f), c(64, 0.0f);
  const GemmArgs ok{false, false, 4, 4, 4, 1.0f, a.data(), 4, b.data(), 4, 0.0f, c.data(), 4};
  if (cpu::Supported() && kHaveOpenBlas) {
    EXPECT_THAT(Gemm(ctx, ok), IsOk());
  }

  GemmArgs g = ok;
  g.m = -1;
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));
  g = ok;
  g.k = -3;
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));

  g = ok;
  g.lda = 3;  // A [M][K] needs lda >= K = 4
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));
  g = ok;
  g.trans_a = true;
  g.m = 5;
  g.lda = 4;  // A^T: A is [K][M], needs lda >= M = 5
  g.ldc = 5;
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));
  g = ok;
  g.trans_b = true;
  g.k = 5;
  g.lda = 5;  // B^T: B is [N][K], needs ldb >= K = 5
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));
  g = ok;
  g.ldc = 3;
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));

  g = ok;
  g.a = nullptr;
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));
  g = ok;
  g.b = nullptr;
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));
  g = ok;
  g.c = nullptr;
  EXPECT_THAT(Gemm(ctx, g), StatusIs(absl::StatusCode::kInvalidArgument));
}

// Empty shapes are valid with null pointers and touch nothing.
TEST(GemmDispatch, EmptyShapesAreOk) {
  ThreadPool pool(2);
  std::vector<Backend> backends = {Backend::kReference};
  if (cpu::Supported() && kHaveOpenBlas) backends.push_back(Backend::kCpu);
  for (Backend backend : backends) {
    const ExecContext ctx{backend, &pool};
    EXPECT_THAT(Gemm(ctx, {false, false, 0, 4, 4, 1.0f, nullptr, 4, nullptr, 4, 0.0f, nullptr, 4}),
                IsOk())
        << BackendName(backend);
    EXPECT_THAT(Gemm(ctx, {true, true, 3, 0, 2, 1.0f, nullptr, 3, nullptr, 2, 0.0f, nullptr, 0}),
                IsOk())
        << BackendName(backend);
  }
}

TEST(GemmCpu, WithoutOpenBlasIsUnimplemented) {
  if (kHaveOpenBlas) GTEST_SKIP() << "built with OpenBLAS";
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
  const std::vector<float> a = {2.0f}, b = {3.0f};
  std::vector<float> c = {0.0f};
  EXPECT_THAT(Gemm(ExecContext{Backend::kCpu, nullptr},
                   {false, false, 1, 1, 1, 1.0f, a.data(), 1, b.data(), 1, 0.0f, c.data(), 1}),
              StatusIs(absl::StatusCode::kUnimplemented));
}

// OpenBLAS takes 32-bit sizes: the CPU backend answers Unimplemented rather than truncating.
TEST(GemmCpu, LeadingDimensionPastInt32IsUnimplemented) {
  SKIP_WITHOUT_CPU_GEMM();
  ThreadPool pool(2);
  const std::vector<float> a = {2.0f}, b = {3.0f};
  std::vector<float> c = {0.0f};
  const GemmArgs g{false, false, 1, 1, 1, 1.0f, a.data(), int64_t{1} << 32, b.data(), 1,
                   0.0f, c.data(), 1};
  EXPECT_THAT(Gemm(ExecContext{Backend::kCpu, &pool}, g),
              StatusIs(absl::StatusCode::kUnimplemented));
  ASSERT_THAT(Gemm(ExecContext{Backend::kReference, nullptr}, g), IsOk());
  EXPECT_TRUE(BitEqual(c, {6.0f}));
}

}  // namespace
}  // namespace anvil
