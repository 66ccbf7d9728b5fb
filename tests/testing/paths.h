// Where tests find the committed fixtures and the real model files.
#ifndef ANVIL_TESTS_TESTING_PATHS_H_
#define ANVIL_TESTS_TESTING_PATHS_H_

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace anvil::testing {

inline std::string FixturePath(const std::string& name) {
  return std::string(ANVIL_FIXTURES_DIR) + "/" + name;
}

// $ANVIL_MODELS, else ~/.cache/anvil/models (where scripts/fetch-model.sh stores them).
inline std::string ModelsDir() {
  if (const char* d = std::getenv("ANVIL_MODELS"); d != nullptr && *d != '\0') return d;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr ? home : "/root") + "/.cache/anvil/models";
}
inline std::string Q41ModelPath() { return ModelsDir() + "/SmolLM2-135M-Instruct.Q4_1.gguf"; }
inline std::string F32ModelPath() { return ModelsDir() + "/SmolLM2-135M-Instruct.F32.gguf"; }
// Copies made with llama.cpp's quantize API from the F32 copy (scripts/reference/llamacpp_golden.sh
// --make-copies, which scripts/test.sh runs).
inline std::string Q80ModelPath() { return ModelsDir() + "/SmolLM2-135M-Instruct.Q8_0.gguf"; }
inline std::string F16ModelPath() { return ModelsDir() + "/SmolLM2-135M-Instruct.F16.gguf"; }

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::abort();
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace anvil::testing

#endif  // ANVIL_TESTS_TESTING_PATHS_H_
