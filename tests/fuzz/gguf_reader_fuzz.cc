// libFuzzer entry point for the GGUF reader: any byte string must parse or fail with
// InvalidArgument, never crash, hang or allocate unboundedly. On success every tensor's data
// must lie inside the input and the typed getters must be safe to call.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "model/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Tighter caps than the defaults keep each input's work small without hiding any code path.
  anvil::gguf::ReadLimits limits;
  limits.max_string_bytes = 1 << 20;
  limits.max_array_elems = 1 << 20;
  auto file = anvil::gguf::GgufFile::FromBuffer("fuzz.gguf", absl::MakeConstSpan(data, size),
                                                limits);
  if (!file.ok()) {
    if (file.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  const anvil::gguf::GgufFile& f = **file;
  for (const auto& t : f.tensors()) {
    const uint8_t* end = t.data + t.size_bytes;
    if (t.data < data || end > data + size || t.num_elements() <= 0) std::abort();
    if (f.FindTensor(t.name) != &t) std::abort();
  }
  for (const auto& [key, value] : f.metadata()) {
    (void)value.DebugString();
    (void)f.GetInt(key);
    (void)f.GetFloat(key);
    (void)f.GetString(key);
    (void)f.GetIntArray(key);
    (void)f.GetFloatArray(key);
    (void)f.GetStringArray(key);
    (void)f.GetBool(key);
  }
  return 0;
}
