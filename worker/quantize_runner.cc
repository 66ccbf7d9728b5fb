#include "worker/quantize_runner.h"

#include <cstdio>
#include <exception>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "model/quantize.h"
#include "rpc/job_spec.h"
#include "worker/artifact_upload.h"

namespace anvil::worker {
namespace {

absl::Status Annotate(const absl::Status& s, const v1::Task& task) {
  return absl::Status(s.code(), absl::StrCat("quantize task ", task.task_id(), " (job ",
                                             task.job_id(), "): ", s.message()));
}

absl::StatusOr<std::vector<std::string>> Quantize(const v1::Task& task,
                                                  const TaskEnvironment& env) {
  const v1::QuantizeSpec& spec = task.spec().quantize();
  if (absl::Status s = rpc::ValidateQuantizeSpec(spec); !s.ok()) return s;
  if (task.world_size() != 1) {
    return absl::InvalidArgumentError("a quantize job runs on one worker");
  }
  absl::StatusOr<QuantFileType> type = ParseQuantFileType(spec.type());
  if (!type.ok()) return type.status();
  QuantizeOptions options;
  options.pure = spec.pure();
  absl::StatusOr<QuantizeReport> report =
      QuantizeGguf(spec.input(), spec.output(), *type, options);
  if (!report.ok()) return report.status();
  if (env.report_log) {
    env.report_log(absl::StrCat("quantized ", spec.input(), " (", report->input_bytes,
                                " bytes) -> ", spec.output(), " (", report->output_bytes,
                                " bytes, ", spec.type(), ", ", report->quantized, " of ",
                                report->tensors, " tensors quantized)"));
  }
  std::vector<std::string> outputs = {spec.output()};
  ArtifactUploader uploader(env.channel, env.token);
  absl::StatusOr<std::string> parent = EnsureModelArtifact(uploader, spec.input());
  if (!parent.ok()) {
    if (absl::Status s = AddRegistered(task, parent.status(), &outputs); !s.ok()) return s;
    return outputs;  // no registry: the file on disk is the result
  }
  v1::ArtifactInfo info;
  info.set_name(absl::StrCat(task.job_id(), "/",
                             std::filesystem::path(spec.output()).filename().string()));
  info.set_kind("model");
  info.set_job_id(task.job_id());
  info.add_parent_ids(*parent);
  (*info.mutable_metadata())["quantization"] = spec.type();
  if (spec.pure()) (*info.mutable_metadata())["pure"] = "true";
  absl::StatusOr<v1::Artifact> a = uploader.UploadFile(spec.output(), std::move(info));
  if (!a.ok()) return a.status();
  outputs.push_back("artifact:" + a->artifact_id());
  return outputs;
}

}  // namespace

TaskOutcome RunQuantizeTask(const v1::Task& task, const TaskEnvironment& env) {
  TaskOutcome out;
  try {
    absl::StatusOr<std::vector<std::string>> r = Quantize(task, env);
    if (r.ok()) {
      out.outputs = *std::move(r);
    } else {
      out.status = Annotate(r.status(), task);
    }
  } catch (const std::exception& e) {
    out.status = Annotate(absl::InternalError(absl::StrCat("exception: ", e.what())), task);
  }
  return out;
}

}  // namespace anvil::worker
