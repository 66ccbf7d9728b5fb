// Resuming is exact: `anvil finetune` (a real process) is killed with SIGKILL at a random moment,
// rerun on the same recipe, and the metrics of every step — including the losses after the
// kill — equal an uninterrupted run's bit for bit (same thread count). Also: a truncated newest
// checkpoint is skipped with a warning and the run resumes from the one before it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "model/tiny_model.h"
#include "tests/testing/status_matchers.h"
#include "train/checkpoint.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;

std::string Anvil() { return std::string(ANVIL_BINARY_DIR) + "/cli/anvil"; }

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A directory with the tiny model, 16 chat records and a LoRA recipe (dropout on, shuffling on,
// gradient accumulation, a checkpoint every step).
std::string MakeRunDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "/train_resume_" + name + "_" + std::to_string(getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  EXPECT_TRUE(WriteTinyLlamaGguf({}, dir + "/tiny.gguf").ok());
  std::string data;
  for (int i = 0; i < 16; ++i) {
    data += absl::StrCat(R"({"messages": [{"role": "user", "content": "Who is in sentence )", i,
                         R"(?"}, {"role": "assistant", "content": "Person )", i * 7 % 13,
                         R"( and place )", i * 5 % 11, R"(."}]})", "\n");
  }
  WriteFile(dir + "/train.jsonl", data);
  WriteFile(dir + "/recipe.yaml", R"(model: tiny.gguf
method: qlora
loss: sft
data: {train: train.jsonl, max_length: 64}
lora: {rank: 4, alpha: 8, dropout: 0.1}
optim: {lr: 0.005, weight_decay: 0.01}
schedule: {warmup_steps: 3, decay: cosine}
train: {steps: 40, micro_batch: 2, grad_accum: 2, threads: 2, seed: 7}
checkpoint: {every: 1, keep: 3}
output: {dir: out, adapter: [gguf]}
)");
  return dir;
}

pid_t Spawn(const std::string& dir) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (chdir(dir.c_str()) != 0) _exit(127);
    const std::string bin = Anvil();
    execl(bin.c_str(), bin.c_str(), "finetune", "recipe.yaml", "--quiet", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Runs to the end; returns the exit status.
int RunToEnd(const std::string& dir) {
  int status = 0;
  waitpid(Spawn(dir), &status, 0);
  return status;
}

// The metrics lines without the timing fields (which differ between runs).
std::vector<std::string> Losses(const std::string& dir) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(ReadFile(dir + "/out/metrics.jsonl"), '\n', absl::SkipEmpty())) {
    const size_t cut = line.find(",\"tokens_per_s\"");
    out.emplace_back(line.substr(0, cut));
  }
  return out;
}

TEST(TrainResumeTest, KilledRunResumesToTheSameLossesBitForBit) {
  const std::string a = MakeRunDir("a");
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(RunToEnd(a), 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<std::string> want = Losses(a);
  ASSERT_EQ(want.size(), 40u);

  std::mt19937_64 rng(std::random_device{}());
  const std::string b = MakeRunDir("b");
  bool killed = false;
  for (int attempt = 0; attempt < 5 && !killed; ++attempt) {
    fs::remove_all(b + "/out");
    // Somewhere in the middle of the run (process start and model load included).
    const double at = seconds * std::uniform_real_distribution<double>(0.3, 0.8)(rng) / (attempt + 1);
    const pid_t pid = Spawn(b);
    std::this_thread::sleep_for(std::chrono::duration<double>(at));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    killed = WIFSIGNALED(status) && Losses(b).size() < 40;
    std::printf("attempt %d: SIGKILL after %.3f s of a %.3f s run: %s, %zu steps logged\n",
                attempt, at, seconds, killed ? "killed mid-run" : "finished first", Losses(b).size());
  }
  ASSERT_TRUE(killed) << "could not kill the run before it finished";
  ASSERT_EQ(RunToEnd(b), 0);
  EXPECT_EQ(Losses(b), want);
}

TEST(TrainResumeTest, TruncatedNewestCheckpointIsSkipped) {
  const std::string dir = MakeRunDir("trunc");
  ASSERT_EQ(RunToEnd(dir), 0);
  const std::string ckpt_dir = dir + "/out/checkpoints";
  const std::string newest = train::CheckpointPath(ckpt_dir, 40);
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);
  EXPECT_THAT(train::ReadCheckpoint(newest).status(),
              testing::StatusIs(absl::StatusCode::kDataLoss));
  auto latest = train::LatestCheckpoint(ckpt_dir);
  ASSERT_THAT(latest.status(), testing::IsOk());
  EXPECT_EQ(latest->step, 39);
  EXPECT_NE(latest->warning.find("ckpt-00000040"), std::string::npos) << latest->warning;
  // The rerun resumes from step 39 and redoes step 40 with the same result.
  const std::vector<std::string> before = Losses(dir);
  ASSERT_EQ(RunToEnd(dir), 0);
  EXPECT_EQ(Losses(dir), before);
}

}  // namespace
}  // namespace anvil
