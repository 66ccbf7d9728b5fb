// anvil serve MODEL: runs anvil-server (the gRPC + OpenAI-compatible HTTP server) on a model
// file, replacing this process so signals reach the server directly. MODEL may be
// registry://NAME: the artifact (by id or name) is first downloaded from the cluster's registry
// into $ANVIL_HOME/models (skipped when a copy with the same SHA-256 is there).
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "anvil/v1/artifacts.grpc.pb.h"
#include "cli/cluster_client.h"
#include "cli/commands.h"
#include "kernels/core/status_macros.h"
#include "rpc/status.h"

namespace anvil::cli {
namespace {

constexpr char kRegistryPrefix[] = "registry://";

// anvil-server next to this binary (installed) or in the build tree's server/ directory.
absl::StatusOr<std::string> ServerBinary() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return absl::InternalError("cannot find this executable (/proc/self/exe)");
  for (const auto& p : {self.parent_path() / "anvil-server",
                        self.parent_path().parent_path() / "server" / "anvil-server"}) {
    if (std::filesystem::exists(p)) return p.string();
  }
  return absl::NotFoundError(absl::StrCat("anvil-server is neither next to ", self.string(),
                                          " nor in ../server/ (build the anvil-server target)"));
}

// registry://NAME -> a local file: NAME is an artifact id ("art-000007") or an artifact name
// (the newest with that name, or whose last path part is NAME).
absl::StatusOr<std::string> FetchFromRegistry(const Args& args, const std::string& name) {
  std::vector<std::string> cluster_argv;
  if (args.Has("coordinator")) cluster_argv = {"--coordinator", args.Get("coordinator")};
  if (args.Has("coordinator-token-file")) {
    cluster_argv.push_back("--token-file");
    cluster_argv.push_back(args.Get("coordinator-token-file"));
  }
  CommandSpec spec{"serve", "", {}, ClusterFlags()};
  ANVIL_ASSIGN_OR_RETURN(Args cargs, Args::Parse(spec, cluster_argv));
  ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(cargs));
  auto stub = v1::Artifacts::NewStub(conn.channel);
  v1::Artifact found;
  bool have = false;
  if (absl::StartsWith(name, "art-")) {
    grpc::ClientContext ctx;
    conn.Prepare(&ctx);
    v1::GetArtifactRequest req;
    req.set_artifact_id(name);
    ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->GetArtifact(&ctx, req, &found)));
    have = true;
  } else {
    std::string page;
    do {
      grpc::ClientContext ctx;
      conn.Prepare(&ctx);
      v1::ListArtifactsRequest req;
      req.set_page_size(1000);
      req.set_page_token(page);
      v1::ListArtifactsResponse resp;
      ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->ListArtifacts(&ctx, req, &resp)));
      for (const v1::Artifact& a : resp.artifacts()) {
        const std::string& n = a.info().name();
        if (n == name || std::filesystem::path(n).filename() == name) {
          found = a;
          have = true;
          break;
        }
      }
      page = resp.next_page_token();
    } while (!have && !page.empty());
  }
  if (!have) return absl::NotFoundError(absl::StrCat("no artifact named '", name, "' in the registry"));
  const std::filesystem::path dir = std::filesystem::path(AnvilHome()) / "models";
  std::filesystem::create_directories(dir);
  const std::string out = (dir / (found.info().sha256() + ".gguf")).string();
  if (std::filesystem::exists(out)) return out;  // named by its digest: already verified
  // The `download` command does the resumable, checked transfer.
  for (const Command& c : ClusterCommands()) {
    if (c.spec.name != "download") continue;
    std::vector<std::string> dargv = {found.artifact_id(), "--out", out};
    dargv.insert(dargv.end(), cluster_argv.begin(), cluster_argv.end());
    ANVIL_ASSIGN_OR_RETURN(Args dargs, Args::Parse(c.spec, dargv));
    ANVIL_RETURN_IF_ERROR(c.run(dargs));
    return out;
  }
  return absl::InternalError("the download command is missing");
}

}  // namespace

Command ServeCommand() {
  Command c;
  c.spec = {"serve",
            "Serve a model over gRPC and an OpenAI-compatible HTTP API (runs anvil-server).",
            {"MODEL"},
            {{"port", "N", "7080", "gRPC port (0 picks one, -1 disables)"},
             {"http-port", "N", "8080", "HTTP port (0 picks one, -1 disables)"},
             {"host", "ADDR", "127.0.0.1", "address to listen on"},
             {"token-file", "PATH", "", "bearer token required on every endpoint"},
             {"threads", "N", "2", "compute threads"},
             {"max-running", "N", "16", "sequences in the running batch"},
             {"max-queue", "N", "64", "waiting requests before 429 / RESOURCE_EXHAUSTED"},
             {"ctx", "N", "2048", "context per sequence"},
             {"kv-type", "f32|f16", "f32", "KV cache elements (f16: half the memory, not bit-exact)"},
             {"matmul", "exact|fast", "exact",
              "fast: batch-invariant block sums, faster batches, not llama.cpp's bits"},
             {"max-tokens-limit", "N", "4096", "largest max_tokens a request may ask"},
             {"default-max-tokens", "N", "256", "max_tokens when a chat request gives none"},
             {"adapter", "NAME=PATH[,NAME=PATH...]", "", "LoRA adapters to load at start"},
             {"model-id", "NAME", "", "the model's name in the API (default: file name)"},
             {"drain-timeout-s", "N", "30", "SIGTERM: time for requests in flight"},
             {"coordinator", "ADDR", "", "registry://: the coordinator (default as `anvil models`)"},
             {"coordinator-token-file", "PATH", "", "registry://: the cluster's token file"}}};
  c.run = [](const Args& args) -> absl::Status {
    std::string model = args.positional(0);
    if (absl::StartsWith(model, kRegistryPrefix)) {
      ANVIL_ASSIGN_OR_RETURN(model, FetchFromRegistry(args, model.substr(strlen(kRegistryPrefix))));
    }
    ANVIL_ASSIGN_OR_RETURN(std::string binary, ServerBinary());
    std::vector<std::string> argv = {binary, "--model", model};
    for (const char* f : {"port", "http-port", "host", "threads", "max-running", "max-queue", "ctx",
                          "kv-type", "matmul", "max-tokens-limit", "default-max-tokens", "drain-timeout-s"}) {
      argv.push_back(absl::StrCat("--", f));
      argv.push_back(args.Get(f));
    }
    for (const char* f : {"token-file", "model-id"}) {
      if (!args.Has(f)) continue;
      argv.push_back(absl::StrCat("--", f));
      argv.push_back(args.Get(f));
    }
    if (args.Has("adapter")) {
      const std::vector<std::string> adapters =
          absl::StrSplit(args.Get("adapter"), ',', absl::SkipEmpty());
      for (const std::string& a : adapters) {
        argv.push_back("--adapter");
        argv.push_back(a);
      }
    }
    std::vector<char*> cargv;
    for (std::string& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::fflush(stdout);
    execv(binary.c_str(), cargv.data());
    return absl::InternalError(absl::StrCat("cannot run ", binary, ": ", std::strerror(errno)));
  };
  return c;
}

}  // namespace anvil::cli
