// Shard documents and their merge. The parser is defensive (a shard comes over the network from
// another worker): every field is type-checked and named in the error.
#include "eval/shards.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "nlohmann/json.hpp"

namespace anvil::eval {
namespace {

using nlohmann::json;

constexpr const char* kFormat = "anvil-eval-shard/1";

json HeaderJson(const TaskResult& r) {
  return json{{"task_name", r.task_name},     {"task_file", r.task_file},
              {"kind", r.kind},               {"data_file", r.data_file},
              {"data_sha256", r.data_sha256}, {"model", r.model},
              {"prompt_name", r.prompt_name}, {"prompt_hash", r.prompt_hash},
              {"strategy", r.strategy},       {"max_tokens", r.max_tokens},
              {"temperature", r.temperature}, {"seed", r.seed}};
}

// Typed field access with errors that name the source and the field path.
class Reader {
 public:
  explicit Reader(const std::string& source) : source_(source) {}

  absl::Status Error(const std::string& field, const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", field, ": ", what));
  }
  absl::StatusOr<const json*> Get(const json& obj, const char* key, const std::string& path,
                                  json::value_t type) const {
    const std::string field = path.empty() ? key : absl::StrCat(path, ".", key);
    if (!obj.is_object()) return Error(path, "expected an object");
    auto it = obj.find(key);
    if (it == obj.end()) return Error(field, "missing");
    const bool ok = type == json::value_t::number_float ? it->is_number()
                    : type == json::value_t::number_integer
                        ? (it->is_number_integer() || it->is_number_unsigned())
                        : it->type() == type;
    if (!ok) return Error(field, absl::StrCat("expected ", json(type).type_name(), ", got ",
                                              it->type_name()));
    return &*it;
  }
  absl::StatusOr<std::string> String(const json& o, const char* k, const std::string& p) const {
    ANVIL_ASSIGN_OR_RETURN(const json* v, Get(o, k, p, json::value_t::string));
    return v->get<std::string>();
  }
  absl::StatusOr<int64_t> Int(const json& o, const char* k, const std::string& p) const {
    ANVIL_ASSIGN_OR_RETURN(const json* v, Get(o, k, p, json::value_t::number_integer));
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Error(p.empty() ? k : absl::StrCat(p, ".", k), "out of range");
    }
    return v->get<int64_t>();
  }
  absl::StatusOr<double> Double(const json& o, const char* k, const std::string& p) const {
    ANVIL_ASSIGN_OR_RETURN(const json* v, Get(o, k, p, json::value_t::number_float));
    return v->get<double>();
  }

 private:
  const std::string& source_;
};

absl::StatusOr<ExampleResult> ParseExample(const Reader& rd, const json& e,
                                           const std::string& path) {
  ExampleResult r;
  ANVIL_ASSIGN_OR_RETURN(r.id, rd.String(e, "id", path));
  ANVIL_ASSIGN_OR_RETURN(r.prediction, rd.String(e, "prediction", path));
  ANVIL_ASSIGN_OR_RETURN(r.output, rd.String(e, "output", path));
  ANVIL_ASSIGN_OR_RETURN(r.reference, rd.String(e, "reference", path));
  ANVIL_ASSIGN_OR_RETURN(const json* scores, rd.Get(e, "scores", path, json::value_t::array));
  for (size_t i = 0; i < scores->size(); ++i) {
    const json& s = (*scores)[i];
    const std::string sp = absl::StrCat(path, ".scores[", i, "]");
    if (!s.is_array() || s.size() != 2 || !s[0].is_string() || !s[1].is_number()) {
      return rd.Error(sp, "expected [name, number]");
    }
    r.scores.emplace_back(s[0].get<std::string>(), s[1].get<double>());
  }
  ANVIL_ASSIGN_OR_RETURN(const json* lls,
                         rd.Get(e, "loglikelihoods", path, json::value_t::array));
  for (size_t i = 0; i < lls->size(); ++i) {
    if (!(*lls)[i].is_number()) {
      return rd.Error(absl::StrCat(path, ".loglikelihoods[", i, "]"), "expected a number");
    }
    r.loglikelihoods.push_back((*lls)[i].get<double>());
  }
  return r;
}

bool SameHeader(const TaskResult& a, const TaskResult& b) {
  return HeaderJson(a) == HeaderJson(b);
}

}  // namespace

std::string SerializeShard(const TaskResult& r, int64_t shard, int64_t num_shards) {
  json examples = json::array();
  for (const ExampleResult& e : r.examples) {
    json scores = json::array();
    for (const auto& [name, value] : e.scores) scores.push_back(json::array({name, value}));
    examples.push_back(json{{"id", e.id},
                            {"prediction", e.prediction},
                            {"output", e.output},
                            {"reference", e.reference},
                            {"scores", scores},
                            {"loglikelihoods", e.loglikelihoods}});
  }
  json doc{{"format", kFormat},     {"shard", shard},       {"num_shards", num_shards},
           {"header", HeaderJson(r)}, {"examples", examples}};
  if (r.perplexity) {
    const PerplexitySummary& p = *r.perplexity;
    doc["perplexity"] = json{{"ppl", p.ppl},           {"uncertainty", p.uncertainty},
                             {"mean_nll", p.mean_nll}, {"scored_tokens", p.scored_tokens},
                             {"chunks", p.chunks},     {"ctx", p.ctx},
                             {"running_ppl", p.running_ppl}};
  }
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<Shard> ParseShard(const std::string& source, const std::string& text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  Reader rd(source);
  if (doc.is_discarded()) return rd.Error("(document)", "not valid JSON");
  ANVIL_ASSIGN_OR_RETURN(std::string format, rd.String(doc, "format", ""));
  if (format != kFormat) return rd.Error("format", absl::StrCat("expected ", kFormat));
  Shard out;
  ANVIL_ASSIGN_OR_RETURN(out.shard, rd.Int(doc, "shard", ""));
  ANVIL_ASSIGN_OR_RETURN(out.num_shards, rd.Int(doc, "num_shards", ""));
  if (out.num_shards < 1 || out.num_shards > 65536 || out.shard < 0 ||
      out.shard >= out.num_shards) {
    return rd.Error("shard", absl::StrCat(out.shard, " of ", out.num_shards, " is out of range"));
  }
  ANVIL_ASSIGN_OR_RETURN(const json* h, rd.Get(doc, "header", "", json::value_t::object));
  TaskResult& r = out.result;
  ANVIL_ASSIGN_OR_RETURN(r.task_name, rd.String(*h, "task_name", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.task_file, rd.String(*h, "task_file", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.kind, rd.String(*h, "kind", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.data_file, rd.String(*h, "data_file", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.data_sha256, rd.String(*h, "data_sha256", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.model, rd.String(*h, "model", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.prompt_name, rd.String(*h, "prompt_name", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.prompt_hash, rd.String(*h, "prompt_hash", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.strategy, rd.String(*h, "strategy", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.max_tokens, rd.Int(*h, "max_tokens", "header"));
  ANVIL_ASSIGN_OR_RETURN(r.temperature, rd.Double(*h, "temperature", "header"));
  ANVIL_ASSIGN_OR_RETURN(const json* seed,
                         rd.Get(*h, "seed", "header", json::value_t::number_integer));
  if (!seed->is_number_unsigned()) return rd.Error("header.seed", "expected unsigned");
  r.seed = seed->get<uint64_t>();
  ANVIL_ASSIGN_OR_RETURN(const json* examples, rd.Get(doc, "examples", "", json::value_t::array));
  for (size_t i = 0; i < examples->size(); ++i) {
    ANVIL_ASSIGN_OR_RETURN(ExampleResult e,
                           ParseExample(rd, (*examples)[i], absl::StrCat("examples[", i, "]")));
    r.examples.push_back(std::move(e));
  }
  if (doc.contains("perplexity")) {
    ANVIL_ASSIGN_OR_RETURN(const json* p, rd.Get(doc, "perplexity", "", json::value_t::object));
    PerplexitySummary s;
    ANVIL_ASSIGN_OR_RETURN(s.ppl, rd.Double(*p, "ppl", "perplexity"));
    ANVIL_ASSIGN_OR_RETURN(s.uncertainty, rd.Double(*p, "uncertainty", "perplexity"));
    ANVIL_ASSIGN_OR_RETURN(s.mean_nll, rd.Double(*p, "mean_nll", "perplexity"));
    ANVIL_ASSIGN_OR_RETURN(s.scored_tokens, rd.Int(*p, "scored_tokens", "perplexity"));
    ANVIL_ASSIGN_OR_RETURN(s.chunks, rd.Int(*p, "chunks", "perplexity"));
    ANVIL_ASSIGN_OR_RETURN(s.ctx, rd.Int(*p, "ctx", "perplexity"));
    ANVIL_ASSIGN_OR_RETURN(const json* run,
                           rd.Get(*p, "running_ppl", "perplexity", json::value_t::array));
    for (const json& v : *run) {
      if (!v.is_number()) return rd.Error("perplexity.running_ppl", "expected numbers");
      s.running_ppl.push_back(v.get<double>());
    }
    r.perplexity = std::move(s);
  }
  return out;
}

absl::StatusOr<TaskResult> MergeShards(std::vector<Shard> shards,
                                       const BootstrapOptions& bootstrap) {
  if (shards.empty()) return absl::InvalidArgumentError("no shards to merge");
  std::sort(shards.begin(), shards.end(),
            [](const Shard& a, const Shard& b) { return a.shard < b.shard; });
  const int64_t n = static_cast<int64_t>(shards.size());
  for (int64_t i = 0; i < n; ++i) {
    if (shards[i].num_shards != n || shards[i].shard != i) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shards: expected each of 0..", n - 1, " once, got shard ", shards[i].shard, " of ",
          shards[i].num_shards, " at position ", i));
    }
    if (!SameHeader(shards[i].result, shards[0].result)) {
      return absl::InvalidArgumentError(
          absl::StrCat("shard ", i, " is from another run (task, data, model or prompt differ)"));
    }
  }
  TaskResult merged = shards[0].result;
  merged.examples.clear();
  merged.metrics.clear();
  if (merged.kind == "perplexity") {
    if (!merged.perplexity) return absl::InvalidArgumentError("shard 0 has no perplexity");
    return merged;
  }
  // Record i is example i / n of shard i % n; a shard holds ceil((total - s) / n) records.
  int64_t total = 0;
  for (const Shard& s : shards) total += static_cast<int64_t>(s.result.examples.size());
  for (int64_t s = 0; s < n; ++s) {
    const int64_t expect = total > s ? (total - s + n - 1) / n : 0;
    if (static_cast<int64_t>(shards[s].result.examples.size()) != expect) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shard ", s, " has ", shards[s].result.examples.size(), " examples; ", expect,
          " expected for ", total, " records over ", n, " shards"));
    }
  }
  for (int64_t i = 0; i < total; ++i) {
    merged.examples.push_back(std::move(shards[i % n].result.examples[i / n]));
  }
  ANVIL_RETURN_IF_ERROR(SummarizeExamples(bootstrap, &merged));
  return merged;
}

}  // namespace anvil::eval
