// Data-parallel RunFinetune on the tiny model: 2 ranks in 2 threads of one process, a
// GlooCollective over loopback TCP with Gloo's HashStore for the rendezvous. With the same
// global batch, world 2 gives the losses of world 1 at every step (1e-4 relative) and the same
// final weights (1e-5 relative L2) for LoRA (with dropout), full fine-tuning and DPO; a run cut
// at step 5 on world 2 resumes on world 1 along the same curve; a stop vote on one rank stops
// both at the same step; ranks that resumed from different steps are refused.
#include <gloo/rendezvous/hash_store.h>
#include <gloo/rendezvous/prefix_store.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "model/tiny_model.h"
#include "tests/testing/status_matchers.h"
#include "train/checkpoint.h"
#include "train/recipe.h"
#include "train/trainer.h"
#include "worker/gloo_collective.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;
using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;

// A directory with the tiny model, 16 SFT and 16 preference records, and `recipe` as r.yaml.
std::string MakeDir(const std::string& name, const std::string& recipe) {
  const std::string dir = ::testing::TempDir() + "/worker_dp_" + name + "_" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  EXPECT_TRUE(WriteTinyLlamaGguf({}, dir + "/tiny.gguf").ok());
  std::string chat, pref;
  for (int i = 0; i < 16; ++i) {
    chat += absl::StrCat(R"({"messages": [{"role": "user", "content": "Who is in sentence )", i,
                         R"(?"}, {"role": "assistant", "content": "Person )", i * 7 % 13,
                         R"( and place )", i * 5 % 11, R"(."}]})", "\n");
    pref += absl::StrCat(R"({"prompt": "Name )", i, R"(?", "chosen": "Ada )", i,
                         R"(", "rejected": "Bob )", i + 1, R"("})", "\n");
  }
  std::ofstream(dir + "/chat.jsonl") << chat;
  std::ofstream(dir + "/pref.jsonl") << pref;
  std::ofstream(dir + "/r.yaml") << recipe;
  return dir;
}

// 10 steps of a global batch of 8 (micro-batch 2, 4 micro-batches: 2 per rank on world 2).
constexpr char kLora[] = R"(model: tiny.gguf
method: lora
loss: sft
data: {train: chat.jsonl, eval: chat.jsonl, max_length: 64}
lora: {rank: 4, alpha: 8, dropout: 0.1}
optim: {lr: 0.005, weight_decay: 0.01}
schedule: {warmup_steps: 2, decay: cosine}
train: {steps: 10, micro_batch: 2, grad_accum: 4, threads: 1, seed: 7}
checkpoint: {every: 5, keep: 0}
output: {dir: out, adapter: [gguf]}
)";

constexpr char kFull[] = R"(model: tiny.gguf
method: full
loss: sft
data: {train: chat.jsonl, max_length: 64}
optim: {lr: 0.001, weight_decay: 0.01}
train: {steps: 10, micro_batch: 2, grad_accum: 4, threads: 1, seed: 7}
checkpoint: {every: 5, keep: 0}
output: {dir: out, merged: f16}
)";

constexpr char kDpo[] = R"(model: tiny.gguf
method: lora
loss: dpo
data: {train: pref.jsonl, eval: pref.jsonl, max_length: 64}
optim: {lr: 0.01}
train: {steps: 6, micro_batch: 2, grad_accum: 2, threads: 1, seed: 3}
checkpoint: {every: 0}
output: {dir: out, adapter: [gguf]}
)";

struct RankRun {
  absl::Status status;
  train::RunResult result;
};

// Runs the recipe in `dir` on `world` ranks (threads); `tweak(rank, recipe, options)` may
// change a rank's recipe or options.
std::vector<RankRun> RunRanks(const std::string& dir, int world,
                              const std::function<void(int, train::Recipe*, train::RunOptions*)>& tweak = {}) {
  absl::StatusOr<train::Recipe> recipe = train::LoadRecipe(dir + "/r.yaml");
  EXPECT_THAT(recipe.status(), IsOk());
  std::vector<RankRun> runs(static_cast<size_t>(world));
  if (!recipe.ok()) return runs;
  gloo::rendezvous::HashStore hash;
  gloo::rendezvous::PrefixStore store(dir, hash);
  auto rank_main = [&](int rank) {
    train::Recipe r = *recipe;
    train::RunOptions o;
    o.progress = false;
    if (tweak) tweak(rank, &r, &o);
    std::unique_ptr<worker::GlooCollective> collective;
    if (world > 1) {
      worker::GlooOptions go;
      go.rank = rank;
      go.world_size = world;
      absl::StatusOr<std::unique_ptr<worker::GlooCollective>> c = worker::GlooCollective::Connect(go, store);
      if (!c.ok()) {
        runs[rank].status = c.status();
        return;
      }
      collective = std::move(*c);
      o.collective = collective.get();
    }
    absl::StatusOr<train::RunResult> res = train::RunFinetune(r, o);
    runs[rank].status = res.status();
    if (res.ok()) runs[rank].result = *std::move(res);
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) threads.emplace_back(rank_main, r);
  for (std::thread& t : threads) t.join();
  return runs;
}

void ExpectCloseLosses(const std::vector<double>& got, const std::vector<double>& want, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], 1e-4 * std::abs(want[i])) << what << ": step index " << i;
  }
}

// Relative L2 distance between the parameters of the newest checkpoints of two runs.
double WeightDistance(const std::string& a, const std::string& b) {
  auto la = train::LatestCheckpoint(a + "/out/checkpoints");
  auto lb = train::LatestCheckpoint(b + "/out/checkpoints");
  EXPECT_THAT(la.status(), IsOk());
  EXPECT_THAT(lb.status(), IsOk());
  if (!la.ok() || !lb.ok()) return 1.0;
  auto ca = train::ReadCheckpoint(la->path);
  auto cb = train::ReadCheckpoint(lb->path);
  EXPECT_THAT(ca.status(), IsOk());
  EXPECT_THAT(cb.status(), IsOk());
  if (!ca.ok() || !cb.ok()) return 1.0;
  EXPECT_EQ(ca->step, cb->step);
  double diff = 0, norm = 0;
  int params = 0;
  for (const train::CheckpointTensor& t : ca->tensors) {
    if (!absl::StartsWith(t.name, "param/")) continue;
    const train::CheckpointTensor* u = cb->Find(t.name);
    EXPECT_NE(u, nullptr) << t.name;
    if (u == nullptr || u->data.size() != t.data.size()) return 1.0;
    for (size_t i = 0; i < t.data.size(); ++i) {
      diff += (static_cast<double>(t.data[i]) - u->data[i]) * (static_cast<double>(t.data[i]) - u->data[i]);
      norm += static_cast<double>(u->data[i]) * u->data[i];
    }
    ++params;
  }
  EXPECT_GT(params, 0);
  return std::sqrt(diff / std::max(norm, 1e-30));
}

void ExpectWorldTwoMatchesWorldOne(const std::string& name, const char* recipe) {
  const std::string one = MakeDir(name + "_w1", recipe), two = MakeDir(name + "_w2", recipe);
  std::vector<RankRun> a = RunRanks(one, 1);
  ASSERT_THAT(a[0].status, IsOk());
  std::vector<RankRun> b = RunRanks(two, 2);
  ASSERT_THAT(b[0].status, IsOk());
  ASSERT_THAT(b[1].status, IsOk());
  ExpectCloseLosses(b[0].result.losses, a[0].result.losses, "rank 0");
  // Every rank sees the global loss, bit for bit the same.
  EXPECT_EQ(b[1].result.losses, b[0].result.losses);
  EXPECT_LT(WeightDistance(two, one), 1e-5);
  if (a[0].result.eval_loss >= 0) {
    EXPECT_NEAR(b[0].result.eval_loss, a[0].result.eval_loss, 1e-4 * a[0].result.eval_loss);
    EXPECT_EQ(b[1].result.eval_loss, b[0].result.eval_loss);
  }
  // Rank 0 alone wrote the metrics (one line per step) and the exports.
  std::ifstream in(two + "/out/metrics.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_EQ(lines, static_cast<int>(a[0].result.losses.size()));
  EXPECT_EQ(b[0].result.outputs.size(), a[0].result.outputs.size());
  EXPECT_TRUE(b[1].result.outputs.empty());
}

TEST(DataParallelTest, LoraOnTwoRanksMatchesOneRank) { ExpectWorldTwoMatchesWorldOne("lora", kLora); }

TEST(DataParallelTest, FullFineTuningOnTwoRanksMatchesOneRank) {
  ExpectWorldTwoMatchesWorldOne("full", kFull);
}

TEST(DataParallelTest, DpoOnTwoRanksMatchesOneRank) { ExpectWorldTwoMatchesWorldOne("dpo", kDpo); }

TEST(DataParallelTest, RunCutOnTwoRanksResumesOnOneAlongTheSameCurve) {
  const std::string whole = MakeDir("whole", kLora), cut = MakeDir("cut", kLora);
  std::vector<RankRun> a = RunRanks(whole, 1);
  ASSERT_THAT(a[0].status, IsOk());
  std::vector<RankRun> b = RunRanks(cut, 2, [](int, train::Recipe*, train::RunOptions* o) {
    o->stop_after_step = 5;
  });
  ASSERT_THAT(b[0].status, IsOk());
  ASSERT_THAT(b[1].status, IsOk());
  ASSERT_EQ(b[0].result.last_step, 5);
  std::vector<RankRun> c = RunRanks(cut, 1);
  ASSERT_THAT(c[0].status, IsOk());
  EXPECT_EQ(c[0].result.resumed_from_step, 5);
  std::vector<double> curve = b[0].result.losses;
  curve.insert(curve.end(), c[0].result.losses.begin(), c[0].result.losses.end());
  ExpectCloseLosses(curve, a[0].result.losses, "world 2 then world 1");
  EXPECT_LT(WeightDistance(cut, whole), 1e-5);
}

TEST(DataParallelTest, AStopVoteOnOneRankStopsBothAtTheSameStep) {
  const std::string dir = MakeDir("stop", kLora);
  std::atomic<int> rank1_steps{0};
  std::vector<RankRun> b = RunRanks(dir, 2, [&](int rank, train::Recipe*, train::RunOptions* o) {
    if (rank != 1) return;
    o->on_step = [&](const train::StepMetrics&) { ++rank1_steps; };
    o->should_stop = [&] { return rank1_steps.load() >= 3; };
  });
  EXPECT_THAT(b[0].status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_THAT(b[1].status, StatusIs(absl::StatusCode::kCancelled));
  EXPECT_EQ(rank1_steps.load(), 3);
  // The checkpoint of step 5 was never written: resuming starts over.
  EXPECT_FALSE(train::LatestCheckpoint(dir + "/out/checkpoints").ok());
}

TEST(DataParallelTest, RanksThatResumeFromDifferentStepsAreRefused) {
  const std::string other = MakeDir("other", kLora), dir = MakeDir("split", kLora);
  ASSERT_THAT(RunRanks(other, 1, [](int, train::Recipe*, train::RunOptions* o) {
                o->stop_after_step = 5;
              })[0].status, IsOk());
  std::vector<RankRun> b = RunRanks(dir, 2, [&](int rank, train::Recipe* r, train::RunOptions*) {
    if (rank == 1) r->checkpoint.dir = other + "/out/checkpoints";
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_THAT(b[r].status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                      ::testing::HasSubstr("rank 1 resumed from step 5")))
        << "rank " << r;
  }
}

}  // namespace
}  // namespace anvil
