// GlooCollective over loopback TCP, ranks in threads of one process, rendezvous through Gloo's
// HashStore: sums are exact and bit-identical on every rank (seeded integer-valued data, so each
// rank can compute the expected result alone); a peer that never joins, or joins and never calls,
// makes the others return DeadlineExceeded within the timeout instead of hanging.
#include <gloo/rendezvous/hash_store.h>
#include <gloo/rendezvous/prefix_store.h>

#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/gloo_collective.h"

namespace anvil::worker {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using std::chrono::milliseconds;

// Small integers: every partial sum is exact in float, whatever the order of the additions.
double Value(int rank, size_t i) { return static_cast<double>((rank * 7 + static_cast<int>(i % 1013)) % 97) - 48; }

GlooOptions Options(int rank, int world, milliseconds timeout = milliseconds(20000)) {
  GlooOptions o;
  o.rank = rank;
  o.world_size = world;
  o.timeout = timeout;
  return o;
}

TEST(GlooCollectiveTest, SumsAreExactOnEveryRank) {
  constexpr int kWorld = 3;
  // 300001 floats span several of Gloo's 1 MiB segments and do not divide by the world size.
  const std::vector<size_t> sizes = {1, 5, 1000, 300001};
  gloo::rendezvous::HashStore hash;
  gloo::rendezvous::PrefixStore store("sums", hash);
  std::vector<std::vector<float>> floats(kWorld);
  std::vector<std::vector<double>> doubles(kWorld);
  std::vector<absl::Status> status(kWorld);
  std::vector<std::thread> threads;
  for (int r = 0; r < kWorld; ++r) {
    threads.emplace_back([&, r] {
      auto c = GlooCollective::Connect(Options(r, kWorld), store);
      if (!c.ok()) {
        status[r] = c.status();
        return;
      }
      EXPECT_EQ((*c)->rank(), r);
      EXPECT_EQ((*c)->world_size(), kWorld);
      for (size_t n : sizes) {
        std::vector<float> f(n);
        std::vector<double> d(n);
        for (size_t i = 0; i < n; ++i) f[i] = static_cast<float>(Value(r, i));
        for (size_t i = 0; i < n; ++i) d[i] = Value(r, i) + 0.25;
        status[r].Update((*c)->AllreduceSum(f.data(), n));
        status[r].Update((*c)->AllreduceSum(d.data(), n));
        floats[r].insert(floats[r].end(), f.begin(), f.end());
        doubles[r].insert(doubles[r].end(), d.begin(), d.end());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int r = 0; r < kWorld; ++r) ASSERT_THAT(status[r], IsOk()) << "rank " << r;
  size_t at = 0;
  for (size_t n : sizes) {
    for (size_t i = 0; i < n; ++i, ++at) {
      double want = 0;
      for (int r = 0; r < kWorld; ++r) want += Value(r, i);
      ASSERT_EQ(floats[0][at], static_cast<float>(want)) << "n " << n << " i " << i;
      ASSERT_EQ(doubles[0][at], want + 0.25 * kWorld) << "n " << n << " i " << i;
    }
  }
  for (int r = 1; r < kWorld; ++r) {
    EXPECT_EQ(floats[r], floats[0]) << "rank " << r;
    EXPECT_EQ(doubles[r], doubles[0]) << "rank " << r;
  }
}

TEST(GlooCollectiveTest, OneRankNeedsNoPeers) {
  gloo::rendezvous::HashStore store;
  auto c = GlooCollective::Connect(Options(0, 1), store);
  ASSERT_THAT(c.status(), IsOk());
  std::vector<float> x = {1.5f, -2.0f};
  EXPECT_THAT((*c)->AllreduceSum(x.data(), x.size()), IsOk());
  EXPECT_EQ(x, (std::vector<float>{1.5f, -2.0f}));
}

TEST(GlooCollectiveTest, BadRankIsInvalidArgument) {
  gloo::rendezvous::HashStore store;
  EXPECT_THAT(GlooCollective::Connect(Options(2, 2), store).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(GlooCollective::Connect(Options(-1, 2), store).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(GlooCollectiveTest, PeerThatNeverJoinsIsDeadlineExceeded) {
  gloo::rendezvous::HashStore store;
  const auto start = std::chrono::steady_clock::now();
  auto c = GlooCollective::Connect(Options(0, 2, milliseconds(500)), store);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(c.status(), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(s, 10.0);
}

TEST(GlooCollectiveTest, PeerThatNeverCallsIsDeadlineExceeded) {
  gloo::rendezvous::HashStore store;
  absl::Notification rank0_done;
  absl::Status connect1;
  // Rank 1 connects and then stays silent (but alive) until rank 0 has given up.
  std::thread peer([&] {
    auto c = GlooCollective::Connect(Options(1, 2, milliseconds(20000)), store);
    connect1 = c.status();
    rank0_done.WaitForNotificationWithTimeout(absl::Seconds(60));
  });
  auto c = GlooCollective::Connect(Options(0, 2, milliseconds(500)), store);
  ASSERT_THAT(c.status(), IsOk());
  std::vector<float> x(1000, 1.0f);
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = (*c)->AllreduceSum(x.data(), x.size());
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_LT(secs, 10.0);
  // The mesh is not trusted after a failure: later calls fail the same way at once.
  EXPECT_THAT((*c)->AllreduceSum(x.data(), x.size()), StatusIs(absl::StatusCode::kDeadlineExceeded));
  rank0_done.Notify();
  peer.join();
  EXPECT_THAT(connect1, IsOk());
}

}  // namespace
}  // namespace anvil::worker
