// make_tiny_model OUT.gguf [--f32] [--untied] [--seed N]: writes the deterministic tiny llama
// GGUF of model/tiny_model.h (default config unless flags say otherwise).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "model/tiny_model.h"

namespace {

constexpr char kUsage[] = "usage: make_tiny_model OUT.gguf [--f32] [--untied] [--seed N]\n";

// Parses argv into `cfg` and `out`; false on a usage error.
bool ParseArgs(int argc, char** argv, anvil::TinyModelConfig* cfg, std::string* out) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--f32") {
      cfg->all_f32 = true;
    } else if (arg == "--untied") {
      cfg->tied_embeddings = false;
    } else if (arg == "--seed" && i + 1 < argc) {
      if (!absl::SimpleAtoi(argv[++i], &cfg->seed)) return false;
    } else if (!arg.empty() && arg[0] != '-' && out->empty()) {
      *out = arg;
    } else {
      return false;
    }
  }
  return !out->empty();
}

}  // namespace

int main(int argc, char** argv) {
  anvil::TinyModelConfig cfg;
  std::string out;
  if (!ParseArgs(argc, argv, &cfg, &out)) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const absl::Status s = anvil::WriteTinyLlamaGguf(cfg, out);
  if (!s.ok()) {
    std::fprintf(stderr, "make_tiny_model: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
