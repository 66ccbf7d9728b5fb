// Checkpoints: SHA-256 against the FIPS test vectors (both compression paths, any split of the
// input), bitwise round trips, refusal of truncated/corrupted/foreign files with DataLoss,
// LatestCheckpoint skipping a corrupt newest file, atomic writes and keep-last-N pruning.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/core/half.h"
#include "model/safetensors.h"
#include "model/sha256.h"
#include "tests/testing/paths.h"
#include "tests/testing/status_matchers.h"
#include "train/checkpoint.h"

namespace anvil::train {
namespace {

namespace fs = std::filesystem;
using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// ---- SHA-256 ----

TEST(Sha256Test, FipsVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// The digest through the portable compression function only (padding done here).
std::string ScalarHex(std::string_view msg) {
  std::string padded(msg);
  padded.push_back(static_cast<char>(0x80));
  while (padded.size() % 64 != 56) padded.push_back('\0');
  const uint64_t bits = msg.size() * 8;
  for (int i = 7; i >= 0; --i) padded.push_back(static_cast<char>(bits >> (8 * i)));
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  internal::Sha256BlocksScalar(h, reinterpret_cast<const uint8_t*>(padded.data()),
                               padded.size() / 64);
  Sha256::Digest d;
  for (int i = 0; i < 32; ++i) d[i] = static_cast<uint8_t>(h[i / 4] >> (24 - 8 * (i % 4)));
  return DigestHex(d);
}

TEST(Sha256Test, AnySplitGivesTheSameDigestOnBothPaths) {
  std::printf("SHA extensions in use: %s\n", Sha256::UsesShaExtensions() ? "yes" : "no");
  EXPECT_EQ(ScalarHex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::mt19937 rng(7);
  std::string data(5000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t len : {0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4097, 5000}) {
    const std::string_view msg(data.data(), len);
    const std::string whole = Sha256Hex(msg);
    EXPECT_EQ(ScalarHex(msg), whole) << len;
    Sha256 h;
    size_t pos = 0;
    while (pos < len) {  // random chunking
      const size_t n = std::min<size_t>(len - pos, rng() % 130);
      h.Update(msg.data() + pos, n);
      pos += n;
    }
    EXPECT_EQ(h.FinishHex(), whole) << len;
  }
  // The hasher resets after Finish.
  Sha256 h;
  h.Update("abc");
  (void)h.Finish();
  h.Update("abc");
  EXPECT_EQ(h.FinishHex(), Sha256Hex("abc"));
}

// ---- checkpoints ----

std::string FreshDir(const std::string& name) {
  const std::string dir =
      ::testing::TempDir() + "/train_checkpoint_test_" + std::to_string(getpid()) + "/" + name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

Checkpoint MakeCheckpoint(int64_t step, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  Checkpoint c;
  c.step = step;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"param.blk.0.attn_q.weight", {8, 16}},
      {"adam.m.blk.0.attn_q.weight", {8, 16}},
      {"adam.v.blk.0.attn_q.weight", {8, 16}},
      {"param.output_norm.weight", {16}},
      {"empty", {0}}};
  for (const auto& [name, shape] : shapes) {
    CheckpointTensor t{name, shape, {}};
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    for (int64_t i = 0; i < n; ++i) t.data.push_back(normal(rng));
    c.tensors.push_back(std::move(t));
  }
  // Values whose bits must survive: -0, a subnormal, inf, a NaN with a payload.
  c.tensors[3].data[0] = -0.0f;
  c.tensors[3].data[1] = 1e-42f;
  c.tensors[3].data[2] = INFINITY;
  c.tensors[3].data[3] = BitsToFloat(0x7fc01234u);
  c.metadata["rng"] = R"({"state":[1,2,3]})";
  c.metadata["data_position"] = R"({"epoch":0,"index":120})";
  c.metadata["loss_history"] = "[2.5,2.25]";
  return c;
}

void ExpectBitwiseEqual(const Checkpoint& a, const Checkpoint& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.metadata, b.metadata);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
    ASSERT_EQ(a.tensors[i].data.size(), b.tensors[i].data.size());
    if (a.tensors[i].data.empty()) continue;  // data() may be null
    EXPECT_EQ(std::memcmp(a.tensors[i].data.data(), b.tensors[i].data.data(),
                          a.tensors[i].data.size() * sizeof(float)),
              0)
        << a.tensors[i].name;
  }
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(CheckpointTest, PathHasEightDigitSteps) {
  EXPECT_EQ(CheckpointPath("/r", 120), "/r/ckpt-00000120.safetensors");
  EXPECT_EQ(CheckpointPath("d", 123456789), "d/ckpt-123456789.safetensors");
}

TEST(CheckpointTest, RoundTripIsBitwiseAndLeavesNoTemporary) {
  const std::string dir = FreshDir("round_trip");
  const Checkpoint c = MakeCheckpoint(120);
  ANVIL_ASSERT_OK_AND_ASSIGN(std::string path, WriteCheckpoint(dir + "/run", c));
  EXPECT_EQ(path, dir + "/run/ckpt-00000120.safetensors");
  EXPECT_THAT(DirEntries(dir + "/run"), ElementsAre("ckpt-00000120.safetensors"));
  ANVIL_ASSERT_OK_AND_ASSIGN(Checkpoint back, ReadCheckpoint(path));
  ExpectBitwiseEqual(c, back);
  ANVIL_ASSERT_OK_AND_ASSIGN(int64_t verified_step, VerifyCheckpoint(path));
  EXPECT_EQ(verified_step, 120);

  // An explicit file name is used as is; the file is a plain safetensors file.
  ANVIL_ASSERT_OK_AND_ASSIGN(path, WriteCheckpoint(dir + "/named.safetensors", c));
  EXPECT_EQ(path, dir + "/named.safetensors");
  ANVIL_ASSERT_OK_AND_ASSIGN(auto st, safetensors::SafetensorsFile::Open(path));
  EXPECT_EQ(*st->FindMetadata(kCheckpointFormatKey), kCheckpointFormat);
  EXPECT_EQ(*st->FindMetadata(kCheckpointStepKey), "120");
  EXPECT_EQ(st->FindMetadata(kCheckpointSha256Key)->size(), 64u);
  EXPECT_EQ(st->names().front(), "param.blk.0.attn_q.weight");
}

TEST(CheckpointTest, WritesFromBorrowedBuffers) {
  const std::string dir = FreshDir("refs");
  const std::vector<float> w = {1, 2, 3, 4, 5, 6};
  ANVIL_ASSERT_OK_AND_ASSIGN(
      std::string path,
      WriteCheckpoint(dir, 7, {{"w", {2, 3}, absl::MakeConstSpan(w)}}, {{"k", "v"}}));
  ANVIL_ASSERT_OK_AND_ASSIGN(Checkpoint back, ReadCheckpoint(path));
  EXPECT_EQ(back.step, 7);
  ASSERT_NE(back.Find("w"), nullptr);
  EXPECT_EQ(back.Find("w")->data, w);
  EXPECT_THAT(back.metadata, ElementsAre(std::pair<const std::string, std::string>("k", "v")));
}

TEST(CheckpointTest, RefusesBadInputsToWrite) {
  const std::string dir = FreshDir("bad_write");
  Checkpoint c = MakeCheckpoint(1);
  c.metadata["anvil.step"] = "5";
  EXPECT_THAT(WriteCheckpoint(dir, c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reserved prefix")));
  c = MakeCheckpoint(1);
  c.tensors[0].shape = {3, 3};
  EXPECT_THAT(WriteCheckpoint(dir, c), StatusIs(absl::StatusCode::kInvalidArgument));
  c = MakeCheckpoint(-1);
  EXPECT_THAT(WriteCheckpoint(dir, c), StatusIs(absl::StatusCode::kInvalidArgument));
  c = MakeCheckpoint(1);
  c.tensors[1].name = c.tensors[0].name;
  EXPECT_THAT(WriteCheckpoint(dir, c),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("duplicate")));
  EXPECT_THAT(DirEntries(dir), IsEmpty());
  // A directory where the file should go: the rename fails and the temporary is removed.
  fs::create_directories(dir + "/ckpt-00000001.safetensors");
  EXPECT_FALSE(WriteCheckpoint(dir, MakeCheckpoint(1)).ok());
  EXPECT_THAT(DirEntries(dir), ElementsAre("ckpt-00000001.safetensors"));
}

TEST(CheckpointTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadCheckpoint(FreshDir("missing") + "/ckpt-00000001.safetensors"),
              StatusIs(absl::StatusCode::kNotFound));
}

TEST(CheckpointTest, EveryTruncationIsDataLoss) {
  const std::string dir = FreshDir("truncated");
  ANVIL_ASSERT_OK_AND_ASSIGN(std::string path, WriteCheckpoint(dir, MakeCheckpoint(3)));
  const std::string good = ::anvil::testing::ReadFileOrDie(path);
  const std::string cut = dir + "/cut.safetensors";
  for (size_t n = 0; n < good.size(); n += (n < 600 ? 1 : 97)) {
    WriteBytes(cut, good.substr(0, n));
    EXPECT_THAT(ReadCheckpoint(cut),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("refusing to resume from it")))
        << n << " of " << good.size() << " bytes";
  }
}

TEST(CheckpointTest, FlippedByteIsDataLoss) {
  const std::string dir = FreshDir("flipped");
  ANVIL_ASSERT_OK_AND_ASSIGN(std::string path, WriteCheckpoint(dir, MakeCheckpoint(120)));
  const std::string good = ::anvil::testing::ReadFileOrDie(path);
  // A bit in the last float of the data section.
  std::string bad = good;
  bad[bad.size() - 1] ^= 0x01;
  WriteBytes(path, bad);
  EXPECT_THAT(ReadCheckpoint(path),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("ckpt-00000120.safetensors: checksum mismatch (file corrupted "
                                 "or partially written")));
  // A digit of a metadata value in the header (still valid JSON).
  bad = good;
  const size_t at = bad.find(R"(\"index\":120)");  // inside the JSON string's escapes
  ASSERT_NE(at, std::string::npos);
  bad[bad.find("120", at)] = '3';
  WriteBytes(path, bad);
  EXPECT_THAT(ReadCheckpoint(path),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("checksum mismatch")));
  // Every single byte, one at a time: never accepted.
  for (size_t i = 0; i < good.size(); i += 7) {
    bad = good;
    bad[i] ^= 0x5a;
    WriteBytes(path, bad);
    EXPECT_THAT(ReadCheckpoint(path), StatusIs(absl::StatusCode::kDataLoss)) << "byte " << i;
  }
}

TEST(CheckpointTest, ForeignSafetensorsFileIsRefused) {
  const std::string dir = FreshDir("foreign");
  safetensors::SafetensorsWriter w;
  ASSERT_THAT(w.Add("x", safetensors::ElementType::kF32, {1}, std::string(4, '\0')), IsOk());
  ASSERT_THAT(w.WriteFile(dir + "/ckpt-00000001.safetensors"), IsOk());
  EXPECT_THAT(ReadCheckpoint(dir + "/ckpt-00000001.safetensors"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not an anvil-checkpoint-v1")));
}

TEST(CheckpointTest, LatestSkipsACorruptNewestOne) {
  const std::string dir = FreshDir("latest");
  EXPECT_THAT(LatestCheckpoint(dir), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(LatestCheckpoint(dir + "/nope"), StatusIs(absl::StatusCode::kNotFound));
  for (int64_t step : {100, 200, 300}) {
    ASSERT_THAT(WriteCheckpoint(dir, MakeCheckpoint(step)), IsOk());
  }
  WriteBytes(dir + "/unrelated.txt", "x");
  WriteBytes(dir + "/ckpt-00000400.safetensors.tmp.abc123", "partial");  // a crashed write
  ANVIL_ASSERT_OK_AND_ASSIGN(LatestCheckpointResult latest, LatestCheckpoint(dir));
  EXPECT_EQ(latest.step, 300);
  EXPECT_EQ(latest.path, CheckpointPath(dir, 300));
  EXPECT_THAT(latest.warning, IsEmpty());

  // Truncate the newest: it is skipped and named.
  const std::string newest = CheckpointPath(dir, 300);
  WriteBytes(newest, ::anvil::testing::ReadFileOrDie(newest).substr(0, 500));
  ANVIL_ASSERT_OK_AND_ASSIGN(latest, LatestCheckpoint(dir));
  EXPECT_EQ(latest.step, 200);
  EXPECT_THAT(latest.warning, HasSubstr("ckpt-00000300.safetensors"));
  EXPECT_THAT(latest.warning, HasSubstr("refusing to resume"));

  // A renamed file whose content is another step is skipped too.
  fs::copy_file(CheckpointPath(dir, 100), CheckpointPath(dir, 250));
  ANVIL_ASSERT_OK_AND_ASSIGN(latest, LatestCheckpoint(dir));
  EXPECT_EQ(latest.step, 200);
  EXPECT_THAT(latest.warning, HasSubstr("file name says step 250"));

  // Nothing complete at all.
  const std::string bad_dir = FreshDir("latest_none");
  WriteBytes(CheckpointPath(bad_dir, 1), "garbage");
  EXPECT_THAT(LatestCheckpoint(bad_dir),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("ckpt-00000001.safetensors")));
}

TEST(CheckpointTest, PruneKeepsTheLastN) {
  const std::string dir = FreshDir("prune");
  for (int64_t step : {5, 10, 15, 20})
    ASSERT_THAT(WriteCheckpoint(dir, MakeCheckpoint(step)), IsOk());
  WriteBytes(dir + "/ckpt-00000025.safetensors.tmp.Xy12Ab", "partial");
  WriteBytes(dir + "/notes.txt", "keep me");
  EXPECT_THAT(PruneCheckpoints(dir, 0), StatusIs(absl::StatusCode::kInvalidArgument));
  ANVIL_ASSERT_OK_AND_ASSIGN(std::vector<std::string> removed, PruneCheckpoints(dir, 2));
  EXPECT_EQ(removed.size(), 3u);
  EXPECT_THAT(DirEntries(dir),
              ElementsAre("ckpt-00000015.safetensors", "ckpt-00000020.safetensors", "notes.txt"));
  ANVIL_ASSERT_OK_AND_ASSIGN(LatestCheckpointResult latest, LatestCheckpoint(dir));
  EXPECT_EQ(latest.step, 20);
}

}  // namespace
}  // namespace anvil::train
