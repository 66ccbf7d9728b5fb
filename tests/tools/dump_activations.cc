// dump_activations: runs token ids through a model and writes every named intermediate the
// forward pass reports (ContextOptions::observer) as raw float32 files, for bitwise parity
// checks against llama.cpp (scripts/reference/llamacpp_dump.py writes the same layout and
// scripts/reference/compare_dumps.py compares two dump directories).
//
// Layout of OUT_DIR: e<eval>_<name>-<layer>.f32 (row-major [rows][cols] float32; layer is omitted
// for whole-model tensors such as result_norm) and index.tsv with one line per file:
// "eval<TAB>name<TAB>layer<TAB>rows<TAB>cols<TAB>file", in the order the forward pass ran.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kernels/core/status_macros.h"
#include "model/llama_model.h"

namespace {

constexpr char kUsage[] =
    "usage: dump_activations --model M.gguf --tokens 1,2,3 [--then 4,5] --out DIR\n"
    "                        [--backend reference|cpu] [--threads N] [--all-logits]\n"
    "  --tokens: evaluated as one batch (eval 0, logits of the last row);\n"
    "  --then:   each id evaluated alone afterwards (evals 1, 2, ...), as in greedy decoding;\n"
    "  --all-logits: eval 0 computes logits for every row (default: the last row only).\n";

struct Config {
  std::string model, out;
  std::vector<int32_t> tokens, then;
  anvil::Backend backend = anvil::Backend::kReference;
  int threads = 2;
  bool all_logits = false;
};

bool ParseIds(const std::string& s, std::vector<int32_t>* ids) {
  for (absl::string_view part : absl::StrSplit(s, ',', absl::SkipEmpty())) {
    int32_t v = 0;
    if (!absl::SimpleAtoi(part, &v)) return false;
    ids->push_back(v);
  }
  return true;
}

bool ParseArgs(int argc, char** argv, Config* cfg) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--all-logits") {
      cfg->all_logits = true;
      continue;
    }
    if (i + 1 >= argc) return false;
    const std::string val = argv[++i];
    if (flag == "--model") {
      cfg->model = val;
    } else if (flag == "--out") {
      cfg->out = val;
    } else if (flag == "--tokens") {
      if (!ParseIds(val, &cfg->tokens)) return false;
    } else if (flag == "--then") {
      if (!ParseIds(val, &cfg->then)) return false;
    } else if (flag == "--threads") {
      if (!absl::SimpleAtoi(val, &cfg->threads)) return false;
    } else if (flag == "--backend") {
      if (val == "reference") {
        cfg->backend = anvil::Backend::kReference;
      } else if (val == "cpu") {
        cfg->backend = anvil::Backend::kCpu;
      } else {
        return false;
      }
    } else {
      return false;
    }
  }
  return !cfg->model.empty() && !cfg->out.empty() && !cfg->tokens.empty();
}

absl::Status Run(const Config& cfg) {
  ANVIL_ASSIGN_OR_RETURN(auto model, anvil::LlamaModel::Load(cfg.model));
  std::ofstream index(cfg.out + "/index.tsv");
  if (!index) return absl::NotFoundError(absl::StrCat(cfg.out, ": cannot write index.tsv"));
  int eval = 0;
  absl::Status write_status;
  anvil::ContextOptions opts;
  opts.n_ctx = 512;
  opts.backend = cfg.backend;
  opts.threads = cfg.threads;
  opts.observer = [&](const std::string& name, int64_t layer, const float* data, int64_t rows,
                      int64_t cols) {
    std::string file = absl::StrCat("e", eval, "_", name);
    if (layer >= 0) absl::StrAppend(&file, "-", layer);
    absl::StrAppend(&file, ".f32");
    std::ofstream f(cfg.out + "/" + file, std::ios::binary);
    f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(rows * cols * 4));
    if (!f && write_status.ok()) write_status = absl::InternalError("write failed: " + file);
    index << eval << '\t' << name << '\t' << layer << '\t' << rows << '\t' << cols << '\t' << file
          << '\n';
  };
  ANVIL_ASSIGN_OR_RETURN(auto ctx, anvil::Context::Create(*model, opts));
  ANVIL_RETURN_IF_ERROR(ctx->Eval(
      cfg.tokens, cfg.all_logits ? anvil::LogitsRequest::All() : anvil::LogitsRequest::Last()));
  for (int32_t id : cfg.then) {
    ++eval;
    ANVIL_RETURN_IF_ERROR(ctx->Eval({&id, 1}));
  }
  return write_status;
}

}  // namespace

int main(int argc, char** argv) {
  Config cfg;
  if (!ParseArgs(argc, argv, &cfg)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const absl::Status s = Run(cfg);
  if (!s.ok()) {
    std::fprintf(stderr, "dump_activations: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
