// The NCCL collective (worker/nccl_collective.h) on the machine's GPUs: sums of host arrays,
// floats and doubles, world 1 on one GPU and 2 ranks on 2 GPUs when there are two; a rank whose
// peer never joins gets DeadlineExceeded instead of hanging. Carries the `cuda` label and skips,
// with the reason, without a usable device.
#include "worker/nccl_collective.h"

#include <gloo/rendezvous/hash_store.h>

#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace anvil::worker {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;

int Gpus() { return static_cast<int>(ListGpus().size()); }

#define SKIP_WITHOUT_GPUS(n)                                                         \
  if (Gpus() < (n)) GTEST_SKIP() << "needs " << (n) << " CUDA device(s), found " << Gpus()

TEST(NcclCollective, ListsTheGpus) {
  SKIP_WITHOUT_GPUS(1);
  for (const GpuInfo& g : ListGpus()) {
    EXPECT_FALSE(g.name.empty());
    EXPECT_GT(g.memory_bytes, int64_t{1} << 30);
  }
}

TEST(NcclCollective, WorldOfOneOnOneGpu) {
  SKIP_WITHOUT_GPUS(1);
  gloo::rendezvous::HashStore store;
  ANVIL_ASSERT_OK_AND_ASSIGN(auto c, NcclCollective::Connect({0, 1, 0}, store));
  // More than one 64 MiB chunk of floats, and an odd count of doubles.
  std::vector<float> f(17'000'001);
  for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(i % 1000) * 0.5f;
  const std::vector<float> f0 = f;
  ASSERT_THAT(c->AllreduceSum(f.data(), f.size()), IsOk());
  EXPECT_EQ(f, f0);
  std::vector<double> d = {1.5, -2.25, 3e300};
  ASSERT_THAT(c->AllreduceSum(d.data(), d.size()), IsOk());
  EXPECT_EQ(d, (std::vector<double>{1.5, -2.25, 3e300}));
}

TEST(NcclCollective, TwoRanksOnTwoGpusSum) {
  SKIP_WITHOUT_GPUS(2);
  gloo::rendezvous::HashStore store;
  std::vector<float> a(1000, 1.0f), b(1000, 2.0f);
  absl::Status sa, sb;
  std::thread t([&] {
    auto c = NcclCollective::Connect({1, 2, 1}, store);
    sb = c.ok() ? (*c)->AllreduceSum(b.data(), b.size()) : c.status();
  });
  auto c = NcclCollective::Connect({0, 2, 0}, store);
  sa = c.ok() ? (*c)->AllreduceSum(a.data(), a.size()) : c.status();
  t.join();
  ASSERT_THAT(sa, IsOk());
  ASSERT_THAT(sb, IsOk());
  EXPECT_EQ(a, std::vector<float>(1000, 3.0f));
  EXPECT_EQ(b, std::vector<float>(1000, 3.0f));
}

TEST(NcclCollective, PeerThatNeverJoinsIsDeadlineExceeded) {
  SKIP_WITHOUT_GPUS(1);
  gloo::rendezvous::HashStore store;
  const auto start = std::chrono::steady_clock::now();
  auto c = NcclCollective::Connect({0, 2, 0, std::chrono::milliseconds(1500)}, store);
  EXPECT_THAT(c.status(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

TEST(NcclCollective, BadArgumentsAreInvalidArgument) {
  gloo::rendezvous::HashStore store;
  EXPECT_THAT(NcclCollective::Connect({2, 2, 0}, store).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  if (Gpus() >= 1) {
    EXPECT_THAT(NcclCollective::Connect({0, 1, 99}, store).status(),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

}  // namespace
}  // namespace anvil::worker
