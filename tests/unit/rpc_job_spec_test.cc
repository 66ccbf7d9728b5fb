// Job specs <-> recipes (rpc/job_spec.h): every recipe in recipes/ survives YAML -> FinetuneSpec
// (protobuf's JSON mapping) -> Recipe unchanged; bad files and specs name the field; and the
// token helpers (rpc/auth.h).
#include "rpc/job_spec.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rpc/auth.h"
#include "tests/testing/status_matchers.h"
#include "train/recipe.h"

namespace anvil::rpc {
namespace {

using ::anvil::testing::IsOk;
using ::anvil::testing::StatusIs;
using ::testing::HasSubstr;

// Field by field: Recipe has no operator==.
void ExpectSameRecipe(const train::Recipe& a, const train::Recipe& b) {
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_EQ(a.data.train, b.data.train);
  EXPECT_EQ(a.data.eval, b.data.eval);
  EXPECT_EQ(a.data.max_length, b.data.max_length);
  EXPECT_EQ(a.data.packing, b.data.packing);
  EXPECT_EQ(a.data.shuffle, b.data.shuffle);
  EXPECT_EQ(a.data.seed, b.data.seed);
  EXPECT_EQ(a.lora.rank, b.lora.rank);
  EXPECT_EQ(a.lora.alpha, b.lora.alpha);
  EXPECT_EQ(a.lora.dropout, b.lora.dropout);
  EXPECT_EQ(a.lora.rslora, b.lora.rslora);
  EXPECT_EQ(a.lora.targets, b.lora.targets);
  EXPECT_EQ(a.dpo.beta, b.dpo.beta);
  EXPECT_EQ(a.optim.lr, b.optim.lr);
  EXPECT_EQ(a.optim.beta1, b.optim.beta1);
  EXPECT_EQ(a.optim.beta2, b.optim.beta2);
  EXPECT_EQ(a.optim.eps, b.optim.eps);
  EXPECT_EQ(a.optim.weight_decay, b.optim.weight_decay);
  EXPECT_EQ(a.optim.grad_clip, b.optim.grad_clip);
  EXPECT_EQ(a.schedule.warmup_steps, b.schedule.warmup_steps);
  EXPECT_EQ(a.schedule.decay, b.schedule.decay);
  EXPECT_EQ(a.schedule.min_lr_ratio, b.schedule.min_lr_ratio);
  EXPECT_EQ(a.train.steps, b.train.steps);
  EXPECT_EQ(a.train.epochs, b.train.epochs);
  EXPECT_EQ(a.train.micro_batch, b.train.micro_batch);
  EXPECT_EQ(a.train.grad_accum, b.train.grad_accum);
  EXPECT_EQ(a.train.threads, b.train.threads);
  EXPECT_EQ(a.train.seed, b.train.seed);
  EXPECT_EQ(a.train.gradient_checkpointing, b.train.gradient_checkpointing);
  EXPECT_EQ(a.checkpoint.dir, b.checkpoint.dir);
  EXPECT_EQ(a.checkpoint.every, b.checkpoint.every);
  EXPECT_EQ(a.checkpoint.keep, b.checkpoint.keep);
  EXPECT_EQ(a.output.dir, b.output.dir);
  EXPECT_EQ(a.output.adapter, b.output.adapter);
  EXPECT_EQ(a.output.merged, b.output.merged);
  EXPECT_EQ(a.log.metrics, b.log.metrics);
  EXPECT_EQ(a.log.every, b.log.every);
}

TEST(JobSpec, EveryShippedRecipeRoundTripsThroughTheSchema) {
  int seen = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(ANVIL_FIXTURES_DIR) / "../../recipes")) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    ++seen;
    absl::StatusOr<train::Recipe> file = train::LoadRecipe(entry.path().string());
    ASSERT_THAT(file.status(), IsOk());
    absl::StatusOr<v1::FinetuneSpec> spec = LoadFinetuneSpec(entry.path().string());
    ASSERT_THAT(spec.status(), IsOk());
    absl::StatusOr<train::Recipe> back = RecipeFromSpec(*spec);
    ASSERT_THAT(back.status(), IsOk());
    ExpectSameRecipe(*file, *back);
    // Paths are absolute in the spec: any process of the cluster reads the same files.
    EXPECT_TRUE(std::filesystem::path(spec->model()).is_absolute()) << spec->model();
    EXPECT_TRUE(std::filesystem::path(spec->data().train()).is_absolute());
    EXPECT_TRUE(std::filesystem::path(spec->output().dir()).is_absolute());
  }
  EXPECT_GE(seen, 2);
}

constexpr char kMinimal[] = R"(model: /m.gguf
method: lora
data:
  train: t.jsonl
  shuffle: false
train:
  steps: 7
  seed: 3000000000
output:
  dir: out
)";

TEST(JobSpec, FalseAndLargeValuesSurvive) {
  absl::StatusOr<v1::FinetuneSpec> spec = FinetuneSpecFromYaml(kMinimal, "m.yaml", "/base");
  ASSERT_THAT(spec.status(), IsOk());
  EXPECT_TRUE(spec->data().has_shuffle());  // set to its type's zero, still present
  EXPECT_FALSE(spec->data().shuffle());
  EXPECT_EQ(spec->train().steps(), 7);
  EXPECT_EQ(spec->train().seed(), 3000000000u);
  EXPECT_EQ(spec->data().train(), "/base/t.jsonl");
  EXPECT_EQ(spec->output().dir(), "/base/out");
  absl::StatusOr<train::Recipe> r = RecipeFromSpec(*spec);
  ASSERT_THAT(r.status(), IsOk());
  EXPECT_FALSE(r->data.shuffle);
  EXPECT_EQ(r->train.seed, 3000000000u);
  EXPECT_EQ(r->train.steps, 7);
}

TEST(JobSpec, BadYamlNamesFileLineAndField) {
  const std::string yaml = std::string(kMinimal) + "lora:\n  rank: eight\n";
  EXPECT_THAT(FinetuneSpecFromYaml(yaml, "bad.yaml", "/b").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       ::testing::AllOf(HasSubstr("bad.yaml:12"), HasSubstr("lora.rank"))));
  EXPECT_THAT(FinetuneSpecFromYaml(std::string(kMinimal) + "lora:\n  rnak: 4\n", "bad.yaml", "/b")
                  .status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("lora.rnak")));
}

TEST(JobSpec, BadSpecNamesTheFieldPath) {
  absl::StatusOr<v1::FinetuneSpec> spec = FinetuneSpecFromYaml(kMinimal, "m.yaml", "/base");
  ASSERT_THAT(spec.status(), IsOk());
  v1::JobSpec job;
  *job.mutable_finetune() = *spec;
  EXPECT_THAT(ValidateJobSpec(job), IsOk());
  job.mutable_finetune()->mutable_lora()->set_rank(-1);
  EXPECT_THAT(ValidateJobSpec(job), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("spec.finetune.lora.rank")));
  job.mutable_finetune()->mutable_lora()->clear_rank();
  job.mutable_finetune()->set_method("lorra");
  EXPECT_THAT(ValidateJobSpec(job),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.finetune.method")));
  job.mutable_finetune()->set_method("lora");
  job.set_min_workers(3);
  job.set_max_workers(2);
  EXPECT_THAT(ValidateJobSpec(job),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.max_workers")));
  job.set_max_workers(0);
  job.set_max_retries(-1);
  EXPECT_THAT(ValidateJobSpec(job),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.max_retries")));
  EXPECT_THAT(ValidateJobSpec(v1::JobSpec()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("spec.task")));
}

TEST(JobSpec, DeployMatMulAndKvTypeAreChecked) {
  v1::JobSpec job;
  v1::DeploySpec* d = job.mutable_deploy();
  d->set_model("/models/m.gguf");
  d->set_matmul("fast");
  d->set_kv_type("f16");
  EXPECT_THAT(ValidateJobSpec(job), IsOk());
  d->set_matmul("faster");
  EXPECT_THAT(ValidateJobSpec(job),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.deploy.matmul: expected exact or fast, got \"faster\"")));
  d->set_matmul("exact");
  d->set_kv_type("q8_0");
  EXPECT_THAT(ValidateJobSpec(job),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.deploy.kv_type: expected f32 or f16, got \"q8_0\"")));
}

TEST(Auth, TokenFileIsPrivateAndRoundTrips) {
  absl::StatusOr<std::string> token = GenerateToken();
  ASSERT_THAT(token.status(), IsOk());
  EXPECT_EQ(token->size(), 64u);
  EXPECT_EQ(token->find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(*token, *GenerateToken());
  const std::string dir = ::testing::TempDir() + "/anvil_auth_test/sub";
  std::filesystem::remove_all(dir);
  const std::string path = dir + "/token";
  ASSERT_THAT(WriteTokenFile(path, *token), IsOk());
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  absl::StatusOr<std::string> back = ReadTokenFile(path);
  ASSERT_THAT(back.status(), IsOk());
  EXPECT_EQ(*back, *token);
  EXPECT_THAT(ReadTokenFile(dir + "/none").status(), StatusIs(absl::StatusCode::kNotFound));
  std::ofstream(dir + "/empty") << "  \n";
  EXPECT_THAT(ReadTokenFile(dir + "/empty").status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace anvil::rpc
