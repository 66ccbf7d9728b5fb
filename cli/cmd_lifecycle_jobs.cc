// The lifecycle's cluster jobs besides fine-tuning (cmd_cluster.cc's `anvil submit`):
//   anvil eval-job MODEL TASK --out R.json [--workers N]   EvalSpec, sharded across the gang
//   anvil quantize-job IN OUT --type q4_1 [--pure]          QuantizeSpec
//   anvil deploy MODEL [--http-port N ...]                  DeploySpec: anvil-server on a worker
// Paths are made absolute here: the workers resolve them on their own.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/cluster_client.h"
#include "cli/job_client.h"
#include "kernels/core/status_macros.h"
#include "rpc/job_spec.h"

namespace anvil::cli {
namespace {

// Validates, submits, prints the job id; with --watch follows it to its end.
absl::Status SubmitAndWatch(const Args& args, const v1::SubmitJobRequest& req) {
  ANVIL_RETURN_IF_ERROR(rpc::ValidateJobSpec(req.spec()));
  ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
  ANVIL_ASSIGN_OR_RETURN(v1::Job job, SubmitJob(conn, req));
  std::printf("%s\n", job.job_id().c_str());
  std::fflush(stdout);
  if (!args.Has("watch") || !args.GetBool("watch")) return absl::OkStatus();
  return WatchJob(conn, job.job_id());
}

// Made absolute against the current directory: the workers resolve paths on their own.
std::string AbsolutePath(const std::string& p) {
  return std::filesystem::absolute(std::filesystem::path(p)).lexically_normal().string();
}

Command EvalJobCommand() {
  Command c;
  c.spec = {"eval-job",
            "Submit an evaluation job (EvalSpec) to the cluster: the task's records are split "
            "across --workers and the merged result file equals `anvil eval --out`'s; it is "
            "registered with the model in the artifact registry.",
            {"MODEL", "TASK"},
            WithClusterFlags({{"out", "PATH", "", "the result JSON the job writes (required)"},
                         {"workers", "N", "1", "workers sharing the records"},
                         {"limit", "N", "0", "score at most N records (0 = all)"},
                         {"strategy", "S", "", "zero_shot, few_shot or chain_of_thought"},
                         {"threads", "N", "0", "CPU threads per worker (0: the worker's)"},
                         {"retries", "N", "2", "failed attempts retried before the job fails"},
                         {"request-id", "ID", "", "idempotency key"},
                         {"watch", "", "", "then follow it like anvil watch"}})};
  c.run = [](const Args& args) -> absl::Status {
    if (!args.Has("out") || args.Get("out").empty()) {
      return absl::InvalidArgumentError("--out is required");
    }
    v1::SubmitJobRequest req;
    req.set_request_id(args.Get("request-id"));
    v1::JobSpec* spec = req.mutable_spec();
    v1::EvalSpec* ev = spec->mutable_eval();
    ev->set_model(AbsolutePath(args.positional(0)));
    ev->set_model_name(args.positional(0));  // as `anvil eval` records it
    ev->set_task(AbsolutePath(args.positional(1)));
    ev->set_output(AbsolutePath(args.Get("out")));
    ANVIL_ASSIGN_OR_RETURN(int64_t limit, args.GetInt("limit"));
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    ANVIL_ASSIGN_OR_RETURN(int64_t workers, args.GetInt("workers"));
    ANVIL_ASSIGN_OR_RETURN(int64_t retries, args.GetInt("retries"));
    if (limit < 0 || limit > INT32_MAX) return absl::InvalidArgumentError("--limit: out of range");
    ev->set_limit(static_cast<int32_t>(limit));
    if (threads != 0) ev->set_threads(static_cast<int32_t>(std::min<int64_t>(threads, 1 << 20)));
    if (!args.Get("strategy").empty()) ev->set_strategy(args.Get("strategy"));
    spec->set_name(absl::StrCat("eval ", args.positional(1).substr(
                                             args.positional(1).find_last_of('/') + 1)));
    spec->set_min_workers(static_cast<int32_t>(std::clamp<int64_t>(workers, -1, 1 << 20)));
    spec->set_max_retries(static_cast<int32_t>(std::clamp<int64_t>(retries, -1, 1 << 20)));
    ANVIL_RETURN_IF_ERROR(rpc::ValidateJobSpec(*spec));
    ANVIL_RETURN_IF_ERROR(SubmitAndWatch(args, req));
    if (args.GetBool("watch")) std::printf("result: %s\n", ev->output().c_str());
    return absl::OkStatus();
  };
  return c;
}

Command QuantizeJobCommand() {
  Command c;
  c.spec = {"quantize-job",
            "Submit a quantization job (QuantizeSpec): IN (F32/F16/BF16 GGUF) -> OUT with "
            "llama.cpp's formulas; OUT is registered as a model whose parent is IN.",
            {"IN", "OUT"},
            WithClusterFlags({{"type", "T", "", "q8_0, q4_0 or q4_1 (required)"},
                              {"pure", "", "", "every quantizable tensor of --type"},
                              {"request-id", "ID", "", "idempotency key"},
                              {"watch", "", "", "then follow it like anvil watch"}})};
  c.run = [](const Args& args) -> absl::Status {
    v1::SubmitJobRequest req;
    req.set_request_id(args.Get("request-id"));
    v1::JobSpec* spec = req.mutable_spec();
    v1::QuantizeSpec* q = spec->mutable_quantize();
    q->set_input(AbsolutePath(args.positional(0)));
    q->set_output(AbsolutePath(args.positional(1)));
    q->set_type(args.Get("type"));
    if (args.GetBool("pure")) q->set_pure(true);
    spec->set_name(absl::StrCat("quantize ", args.Get("type")));
    return SubmitAndWatch(args, req);
  };
  return c;
}

// "a=/p/a.gguf,b=/p/b" -> the spec's adapters map.
absl::Status ParseAdapters(const std::string& text, v1::DeploySpec* spec) {
  if (text.empty()) return absl::OkStatus();
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    const size_t eq = item.find('=');
    if (eq == absl::string_view::npos || eq == 0 || eq + 1 == item.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--adapters: expected NAME=PATH[,NAME=PATH...], got \"", item, "\""));
    }
    (*spec->mutable_adapters())[std::string(item.substr(0, eq))] =
        AbsolutePath(std::string(item.substr(eq + 1)));
  }
  return absl::OkStatus();
}

Command DeployCommand() {
  Command c;
  c.spec = {"deploy",
            "Deploy MODEL behind anvil-server on a cluster worker (DeploySpec); waits until it "
            "is ready and prints its endpoints. `anvil cancel JOB` drains and stops it.",
            {"MODEL"},
            WithClusterFlags({{"http-port", "N", "0", "HTTP port (0: a free one)"},
                              {"grpc-port", "N", "0", "gRPC port (0: a free one)"},
                              {"host", "ADDR", "127.0.0.1", "listen address"},
                              {"threads", "N", "0", "CPU threads (0: the worker's)"},
                              {"matmul", "exact|fast", "exact", "anvil-server --matmul"},
                              {"kv-type", "f32|f16", "f32", "anvil-server --kv-type"},
                              {"server-token-file", "PATH", "", "bearer token clients must send"},
                              {"adapters", "LIST", "", "NAME=PATH,... LoRA adapters to load"},
                              {"wait-s", "N", "300", "give up waiting for readiness after N s"},
                              {"request-id", "ID", "", "idempotency key"}})};
  c.run = [](const Args& args) -> absl::Status {
    v1::SubmitJobRequest req;
    req.set_request_id(args.Get("request-id"));
    v1::JobSpec* spec = req.mutable_spec();
    v1::DeploySpec* d = spec->mutable_deploy();
    d->set_model(AbsolutePath(args.positional(0)));
    ANVIL_ASSIGN_OR_RETURN(int64_t http, args.GetInt("http-port"));
    ANVIL_ASSIGN_OR_RETURN(int64_t grpc_port, args.GetInt("grpc-port"));
    ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
    ANVIL_ASSIGN_OR_RETURN(int64_t wait_s, args.GetInt("wait-s"));
    d->set_http_port(static_cast<int32_t>(std::clamp<int64_t>(http, -1, 1 << 20)));
    d->set_grpc_port(static_cast<int32_t>(std::clamp<int64_t>(grpc_port, -1, 1 << 20)));
    d->set_host(args.Get("host"));
    if (threads != 0) d->set_threads(static_cast<int32_t>(std::clamp<int64_t>(threads, -1, 1 << 20)));
    if (args.Get("matmul") != "exact") d->set_matmul(args.Get("matmul"));
    if (args.Get("kv-type") != "f32") d->set_kv_type(args.Get("kv-type"));
    if (!args.Get("server-token-file").empty()) {
      d->set_token_file(AbsolutePath(args.Get("server-token-file")));
    }
    ANVIL_RETURN_IF_ERROR(ParseAdapters(args.Get("adapters"), d));
    spec->set_name(absl::StrCat("deploy ", std::filesystem::path(args.positional(0)).filename().string()));
    ANVIL_RETURN_IF_ERROR(rpc::ValidateJobSpec(*spec));
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    ANVIL_ASSIGN_OR_RETURN(v1::Job job, SubmitJob(conn, req));
    std::printf("%s\n", job.job_id().c_str());
    std::fflush(stdout);
    // Its log lines until the server says it is ready (or the job ends).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_s);
    bool ready = false;
    ANVIL_ASSIGN_OR_RETURN(
        v1::JobState state, FollowJob(conn, job.job_id(), 60, [&](const v1::JobEvent& ev) {
          if (ev.has_log()) {
            std::printf("%s\n", ev.log().text().c_str());
            std::fflush(stdout);
            if (absl::StrContains(ev.log().text(), "anvil-server ready")) ready = true;
          }
          return !ready && std::chrono::steady_clock::now() < deadline;
        }));
    if (ready) {
      std::printf("deployed as %s; stop it with: anvil cancel %s\n", job.job_id().c_str(),
                  job.job_id().c_str());
      return absl::OkStatus();
    }
    if (IsFinal(state)) return JobResult(conn, job.job_id(), state);
    return absl::DeadlineExceededError(absl::StrCat(job.job_id(), ": not ready after ", wait_s,
                                                    " s (still ", StateName(state), ")"));
  };
  return c;
}

}  // namespace

std::vector<Command> LifecycleJobCommands() {
  return {EvalJobCommand(), QuantizeJobCommand(), DeployCommand()};
}

}  // namespace anvil::cli
