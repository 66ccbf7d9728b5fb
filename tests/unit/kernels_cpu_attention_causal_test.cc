// CausalAttention (kernels/layer_ops.h), the training forward's attention: the CPU backend's
// blocked products against the reference Attention (double-free float math in the reference's
// key-by-key order) over awkward shapes (T = 1, T not a multiple of the 32-query blocks or of
// 16, GQA groups of 3 and 1, head dims not a multiple of 16, peaky softmaxes) on 1 to 3
// threads, within atol + rtol * |ref|; the reference backend is Attention itself (bit-equal);
// and the dispatcher's error codes.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/core/thread_pool.h"
#include "kernels/cpu/cpu.h"
#include "kernels/layer_ops.h"
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

struct Case {
  int64_t t, h, h_kv, d;
  float range;  // q and k uniform in [-range, range]: larger is a peakier softmax
};

struct Inputs {
  std::vector<float> q, k, v;
  float scale;
  AttentionArgs Args(float* out, const Case& c) const {
    return {q.data(), k.data(), v.data(), out, c.t, 0, c.h, c.h_kv, c.d, scale};
  }
};

Inputs MakeInputs(const Case& c) {
  return {RandomFloats(c.t * c.h * c.d, 31, -c.range, c.range),
          RandomFloats(c.t * c.h_kv * c.d, 32, -c.range, c.range),
          RandomFloats(c.t * c.h_kv * c.d, 33), 1.0f / std::sqrt(static_cast<float>(c.d))};
}

TEST(CausalAttentionCpu, MatchesReference) {
  if (!cpu::Supported()) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
  const Case cases[] = {{1, 9, 3, 64, 1.0f},  {2, 3, 1, 8, 1.0f},   {17, 6, 2, 64, 2.0f},
                        {33, 3, 3, 5, 1.0f},  {70, 9, 3, 64, 1.0f}, {45, 4, 1, 20, 4.0f},
                        {256, 9, 3, 64, 1.0f}};
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (const Case& c : cases) {
      const Inputs in = MakeInputs(c);
      std::vector<float> want(in.q.size()), got(in.q.size(), NAN);
      reference::Attention(in.Args(want.data(), c));
      ASSERT_THAT(cpu::CausalAttention(&pool, in.Args(got.data(), c)), IsOk());
      // Outputs are convex combinations of v in [-1, 1]: float sums of at most T products and
      // ggml's exp (2.24 ulp) stay within a few 1e-7 of them.
      EXPECT_TRUE(AllClose(got, want, 2e-6, 1e-5))
          << "T=" << c.t << " H=" << c.h << " Hkv=" << c.h_kv << " D=" << c.d
          << " threads=" << threads;
    }
  }
}

TEST(CausalAttentionDispatch, ReferenceBackendIsAttention) {
  const Case c{19, 6, 2, 16, 1.0f};
  const Inputs in = MakeInputs(c);
  std::vector<float> want(in.q.size()), got(in.q.size());
  reference::Attention(in.Args(want.data(), c));
  ASSERT_THAT(CausalAttention({Backend::kReference}, in.Args(got.data(), c)), IsOk());
  EXPECT_TRUE(BitEqual(got, want));
}

TEST(CausalAttentionDispatch, InvalidArguments) {
  const Case c{4, 4, 2, 8, 1.0f};
  const Inputs in = MakeInputs(c);
  std::vector<float> out(in.q.size());
  const ExecContext ctx{Backend::kReference};
  AttentionArgs a = in.Args(out.data(), c);
  a.h_kv = 3;  // H = 4 is not a multiple
  EXPECT_THAT(CausalAttention(ctx, a), StatusIs(absl::StatusCode::kInvalidArgument));
  a = in.Args(out.data(), c);
  a.past = 2;  // only whole sequences
  EXPECT_THAT(CausalAttention(ctx, a), StatusIs(absl::StatusCode::kInvalidArgument));
  a = in.Args(out.data(), c);
  const float* blocks[1] = {in.k.data()};
  a.k_blocks = blocks, a.v_blocks = blocks, a.block_rows = 4;
  EXPECT_THAT(CausalAttention(ctx, a), StatusIs(absl::StatusCode::kInvalidArgument));
  a = in.Args(out.data(), c);
  a.d = 0;
  EXPECT_THAT(CausalAttention(ctx, a), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil
