// Shared flag sets, model loading and the model card for the anvil subcommands.
#include "cli/common.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "kernels/core/status_macros.h"

namespace anvil::cli {

std::vector<FlagSpec> Concat(std::vector<FlagSpec> a, const std::vector<FlagSpec>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<FlagSpec> ContextFlags() {
  return {
      {"threads", "N", "2", "CPU threads"},
      {"ctx", "N", "2048", "context size in tokens (KV cache capacity)"},
      {"batch", "N", "512", "tokens per forward chunk during prefill"},
      {"backend", "NAME", "cpu", "kernels: cpu (AVX2) or reference (plain loops)"},
      {"matmul", "exact|fast", "exact",
       "quantized matmul order: llama.cpp's, or anvil-server --matmul fast's"},
  };
}

std::vector<FlagSpec> SamplingFlags() {
  return {
      {"max-tokens", "N", "256", "maximum tokens to generate"},
      {"temp", "T", "0.8", "temperature; 0 = greedy"},
      {"top-k", "K", "40", "keep the K most likely tokens; 0 = off"},
      {"top-p", "P", "0.95", "nucleus sampling mass; 1 = off"},
      {"min-p", "P", "0.05", "drop tokens below P times the best probability; 0 = off"},
      {"repeat-penalty", "R", "1.0", "penalty for recently seen tokens; 1 = off"},
      {"repeat-last-n", "N", "64", "how many recent tokens the penalty considers"},
      {"seed", "N", "42", "random seed (same seed, same output)"},
      {"stop", "STR", "", "stop string; repeat with commas: --stop 'a,b'"},
      {"ignore-eos", "", "", "keep generating past end-of-generation tokens"},
  };
}

absl::StatusOr<ContextOptions> ParseContextOptions(const Args& args) {
  ContextOptions o;
  ANVIL_ASSIGN_OR_RETURN(int64_t threads, args.GetInt("threads"));
  ANVIL_ASSIGN_OR_RETURN(o.n_ctx, args.GetInt("ctx"));
  ANVIL_ASSIGN_OR_RETURN(o.n_batch, args.GetInt("batch"));
  if (threads < 1 || threads > 256) return absl::InvalidArgumentError("--threads must be 1..256");
  if (o.n_ctx < 1) return absl::InvalidArgumentError("--ctx must be positive");
  if (o.n_batch < 1) return absl::InvalidArgumentError("--batch must be positive");
  o.threads = static_cast<int>(threads);
  const std::string backend = args.Get("backend");
  if (backend == "cpu") {
    o.backend = Backend::kCpu;
  } else if (backend == "reference") {
    o.backend = Backend::kReference;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--backend must be cpu or reference, got '", backend, "'"));
  }
  const std::string matmul = args.Get("matmul");
  if (matmul != "exact" && matmul != "fast") {
    return absl::InvalidArgumentError(
        absl::StrCat("--matmul must be exact or fast, got '", matmul, "'"));
  }
  o.matmul = matmul == "fast" ? MatMulNumerics::kBlockSum : MatMulNumerics::kLlamaCpp;
  return o;
}

absl::StatusOr<GenerateOptions> ParseGenerateOptions(const Args& args) {
  GenerateOptions g;
  ANVIL_ASSIGN_OR_RETURN(int64_t max_tokens, args.GetInt("max-tokens"));
  if (max_tokens < 0 || max_tokens > (1 << 24)) {
    return absl::InvalidArgumentError("--max-tokens must be 0..16777216");
  }
  g.max_tokens = static_cast<int32_t>(max_tokens);
  SamplingParams& s = g.sampling;
  ANVIL_ASSIGN_OR_RETURN(double temp, args.GetDouble("temp"));
  ANVIL_ASSIGN_OR_RETURN(int64_t top_k, args.GetInt("top-k"));
  ANVIL_ASSIGN_OR_RETURN(double top_p, args.GetDouble("top-p"));
  ANVIL_ASSIGN_OR_RETURN(double min_p, args.GetDouble("min-p"));
  ANVIL_ASSIGN_OR_RETURN(double rp, args.GetDouble("repeat-penalty"));
  ANVIL_ASSIGN_OR_RETURN(int64_t last_n, args.GetInt("repeat-last-n"));
  ANVIL_ASSIGN_OR_RETURN(int64_t seed, args.GetInt("seed"));
  s.temperature = static_cast<float>(temp);
  s.top_k = static_cast<int32_t>(std::clamp<int64_t>(top_k, -1, 1 << 30));
  s.top_p = static_cast<float>(top_p);
  s.min_p = static_cast<float>(min_p);
  s.repeat_penalty = static_cast<float>(rp);
  s.repeat_last_n = static_cast<int32_t>(std::clamp<int64_t>(last_n, -1, 1 << 20));
  s.seed = static_cast<uint64_t>(seed);
  ANVIL_RETURN_IF_ERROR(ValidateSamplingParams(s));
  if (!args.Get("stop").empty()) {
    for (absl::string_view part : absl::StrSplit(args.Get("stop"), ',', absl::SkipEmpty())) {
      g.stop.emplace_back(part);
    }
  }
  g.stop_at_eog = !args.GetBool("ignore-eos");
  return g;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LoadModel(const std::string& path) {
  return LlamaModel::Load(path);
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot read: ", std::strerror(errno)));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ModelCard(const LlamaModel& model) {
  const LlamaConfig& c = model.config();
  const gguf::GgufFile& f = model.file();
  std::string out;
  auto line = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(&out, absl::StrFormat("  %-22s %s\n", k, v));
  };
  auto meta = [&](const std::string& key) {
    const gguf::Value* v = f.Find(key);
    return v == nullptr ? std::string("-") : v->DebugString(4, 120);
  };
  int64_t params = 0;
  std::map<std::string, int64_t> types;  // type name -> tensor count
  for (const gguf::TensorInfo& t : f.tensors()) {
    params += t.num_elements();
    const gguf::GgmlTypeInfo* ti = gguf::FindGgmlType(t.ggml_type);
    types[ti ? ti->name : "?"]++;
  }
  std::string type_hist;
  for (const auto& [name, n] : types) absl::StrAppend(&type_hist, name, " x", n, "  ");
  absl::StrAppend(&out, "model card: ", f.name(), "\n");
  line("name", meta("general.name"));
  line("architecture", c.architecture);
  line("parameters", absl::StrFormat("%d (%.1fM)", params, params / 1e6));
  line("file", absl::StrFormat("%.1f MiB, GGUF v%d, %d tensors, %d metadata keys",
                               f.file_size() / 1048576.0, f.version(), f.tensors().size(),
                               f.metadata().size()));
  line("quantization", absl::StrCat("file_type ", meta("general.file_type"), "; ", type_hist));
  line("layers", absl::StrCat(c.n_layer));
  line("embedding (C)", absl::StrCat(c.n_embd));
  line("heads (H / Hkv)", absl::StrCat(c.n_head, " / ", c.n_head_kv, " (head dim ", c.head_dim,
                                       ")"));
  line("feed-forward (F)", absl::StrCat(c.n_ff));
  line("vocab", absl::StrCat(c.n_vocab));
  line("context (trained)", absl::StrCat(c.n_ctx_train));
  line("rope", absl::StrCat(c.rope_neox ? "neox" : "norm", ", base ", c.rope_freq_base));
  line("rms eps", absl::StrCat(c.rms_eps));
  line("tied embeddings", c.tied_embeddings ? "yes" : "no");
  const Tokenizer& tok = model.tokenizer();
  line("tokenizer", absl::StrCat(tok.vocab().model, " / pre ", tok.vocab().pre));
  auto token_text = [&](int32_t id) {
    return id >= 0 ? std::string(tok.TokenText(id)) : std::string("-");
  };
  line("bos / eos", absl::StrCat(tok.bos_id(), " ", token_text(tok.bos_id()), " / ",
                                 tok.eos_id(), " ", token_text(tok.eos_id()),
                                 tok.add_bos() ? " (BOS added)" : " (no BOS added)"));
  if (model.chat_template().has_value()) {
    const ChatTemplate& t = *model.chat_template();
    line("chat template", ChatFamilyName(t.family()));
    if (!t.default_system_prompt().empty()) {
      line("default system", absl::StrCat("\"", t.default_system_prompt(), "\""));
    }
  } else {
    line("chat template", absl::StrCat("none (", model.chat_template_error(), ")"));
  }
  return out;
}

}  // namespace anvil::cli
