// The artifact registry's commands: anvil models (the table of stored artifacts with their
// lineage) and anvil download (resumable, checked against the stored SHA-256). Thin clients of
// the Artifacts service (proto/anvil/v1/artifacts.proto).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "anvil/v1/artifacts.grpc.pb.h"
#include "cli/cluster_client.h"
#include "cli/job_client.h"
#include "cli/commands.h"
#include "kernels/core/status_macros.h"
#include "model/sha256.h"
#include "rpc/status.h"

namespace anvil::cli {
namespace {

constexpr int kReconnectSeconds = 60;  // a download waits this long for a coordinator to return

std::string HumanBytes(int64_t n) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  return u == 0 ? absl::StrCat(n, " B") : absl::StrFormat("%.1f %s", v, kUnits[u]);
}

// The ancestors' names, root first: "tiny.gguf -> job-000001/adapter_model.safetensors".
std::string Lineage(const v1::Artifact& a) {
  std::vector<std::string> names;
  for (const v1::LineageEntry& e : a.lineage()) names.push_back(e.name());
  return names.empty() ? "-" : absl::StrJoin(names, " -> ");
}

// An eval result's numbers from its metadata: "ner: exact_match_json 0.250000 [...]; ...".
std::string Scores(const v1::Artifact& a) {
  if (a.info().kind() != "eval") return "";
  const auto& m = a.info().metadata();
  std::vector<std::string> parts;
  for (const auto& [k, v] : std::map<std::string, std::string>(m.begin(), m.end())) {
    if (k == "task" || k == "task_file" || k == "strategy" || k == "examples") continue;
    parts.push_back(absl::StrCat(k, " ", v));
  }
  const auto task = m.find("task");
  return absl::StrCat(task == m.end() ? "?" : task->second, ": ", absl::StrJoin(parts, "; "));
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(rows.front().size(), 0);
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

Command ModelsCommand() {
  Command c;
  c.spec = {"models",
            "List the cluster's artifacts (models, adapters, checkpoints, eval results, files), "
            "newest first, each with its lineage (base -> adapter -> merged); eval results "
            "with their scores.",
            {},
            WithClusterFlags({{"kind", "KIND", "", "only this kind: model, adapter, checkpoint, eval, file"},
                         {"job", "JOB", "", "only what this job made"},
                         {"all", "", "", "every artifact (default: the newest 50)"}})};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    auto stub = v1::Artifacts::NewStub(conn.channel);
    std::vector<std::vector<std::string>> rows = {{"ID", "KIND", "NAME", "SIZE", "LINEAGE", "JOB", "SCORES"}};
    v1::ListArtifactsRequest req;
    req.set_kind(args.Get("kind"));
    req.set_job_id(args.Get("job"));
    req.set_page_size(50);
    for (;;) {
      grpc::ClientContext ctx;
      conn.Prepare(&ctx);
      v1::ListArtifactsResponse resp;
      ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->ListArtifacts(&ctx, req, &resp)));
      for (const v1::Artifact& a : resp.artifacts()) {
        rows.push_back({a.artifact_id(), a.info().kind(), a.info().name(),
                        HumanBytes(a.info().size_bytes()), Lineage(a),
                        a.info().job_id().empty() ? "-" : a.info().job_id(), Scores(a)});
      }
      if (!args.GetBool("all") || resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
    PrintTable(rows);
    return absl::OkStatus();
  };
  return c;
}

struct Received {
  int64_t bytes = 0;  // appended to the file (and the hasher), even when status is not OK
  absl::Status status;
};

// Appends the artifact's bytes from `offset` to `out`, hashing them.
Received DownloadFrom(const ClusterConnection& conn, const std::string& id, int64_t offset,
                      std::ofstream& out, Sha256& hasher) {
  auto stub = v1::Artifacts::NewStub(conn.channel);
  grpc::ClientContext ctx;
  conn.Prepare(&ctx, 24 * 3600);
  v1::DownloadRequest req;
  req.set_artifact_id(id);
  req.set_offset(offset);
  auto reader = stub->Download(&ctx, req);
  v1::DownloadChunk chunk;
  Received r;
  while (reader->Read(&chunk)) {
    if (chunk.offset() != offset + r.bytes) {
      ctx.TryCancel();
      (void)reader->Finish();
      r.status = absl::DataLossError(absl::StrCat(id, ": chunk at offset ", chunk.offset(),
                                                  ", expected ", offset + r.bytes));
      return r;
    }
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    hasher.Update(chunk.data());
    r.bytes += static_cast<int64_t>(chunk.data().size());
  }
  out.flush();
  r.status = rpc::FromGrpc(reader->Finish());
  if (!out) r.status = absl::ResourceExhaustedError(absl::StrCat("writing ", id, ": disk full?"));
  return r;
}

// The bytes already in `path` hashed into `hasher`; its size.
int64_t HashExisting(const std::string& path, Sha256& hasher) {
  std::ifstream in(path, std::ios::binary);
  std::string buf(1 << 20, '\0');
  int64_t n = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    hasher.Update(buf.data(), static_cast<size_t>(in.gcount()));
    n += in.gcount();
  }
  return n;
}

absl::Status Download(const ClusterConnection& conn, const std::string& id, std::string out_path) {
  auto stub = v1::Artifacts::NewStub(conn.channel);
  v1::Artifact artifact;
  {
    grpc::ClientContext ctx;
    conn.Prepare(&ctx);
    v1::GetArtifactRequest req;
    req.set_artifact_id(id);
    ANVIL_RETURN_IF_ERROR(rpc::FromGrpc(stub->GetArtifact(&ctx, req, &artifact)));
  }
  if (out_path.empty()) out_path = std::filesystem::path(artifact.info().name()).filename().string();
  const int64_t size = artifact.info().size_bytes();
  // A download goes to PATH.part first, and resumes from what an interrupted one left there.
  const std::string part = out_path + ".part";
  Sha256 hasher;
  int64_t have = HashExisting(part, hasher);
  if (have > size) {
    hasher.Reset();
    have = 0;
    std::filesystem::remove(part);
  }
  std::ofstream out(part, std::ios::binary | std::ios::app);
  if (!out) return absl::FailedPreconditionError(absl::StrCat(part, ": cannot open for writing"));
  auto down_since = std::chrono::steady_clock::now();
  for (;;) {
    const Received r = DownloadFrom(conn, id, have, out, hasher);
    have += r.bytes;
    if (r.status.ok()) break;
    if (!absl::IsUnavailable(r.status)) return r.status;
    if (r.bytes > 0) down_since = std::chrono::steady_clock::now();
    if (std::chrono::steady_clock::now() - down_since > std::chrono::seconds(kReconnectSeconds)) {
      return r.status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  out.close();
  const std::string got = hasher.FinishHex();
  if (have != size || got != artifact.info().sha256()) {
    std::filesystem::remove(part);
    return absl::DataLossError(absl::StrCat(id, ": downloaded ", have, " bytes with sha256 ", got,
                                            ", expected ", size, " bytes with sha256 ",
                                            artifact.info().sha256(), "; removed ", part));
  }
  std::error_code ec;
  std::filesystem::rename(part, out_path, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat(out_path, ": ", ec.message()));
  std::printf("%s: %s -> %s (sha256 %s)\n", id.c_str(), HumanBytes(size).c_str(),
              out_path.c_str(), got.c_str());
  return absl::OkStatus();
}

Command DownloadCommand() {
  Command c;
  c.spec = {"download",
            "Download an artifact (resumes an interrupted download; checks its SHA-256).",
            {"ARTIFACT_ID"},
            WithClusterFlags({{"out", "PATH", "", "where to write it (default: its name's last part)"}})};
  c.run = [](const Args& args) -> absl::Status {
    ANVIL_ASSIGN_OR_RETURN(ClusterConnection conn, ConnectCluster(args));
    return Download(conn, args.positional(0), args.Get("out"));
  };
  return c;
}

}  // namespace

std::vector<Command> ArtifactCommands() { return {ModelsCommand(), DownloadCommand()}; }

}  // namespace anvil::cli
