// libFuzzer entry point for the safetensors reader: any byte string must parse or fail with
// InvalidArgument, never crash, hang or allocate unboundedly. On success every tensor's bytes
// must lie inside the data section and match its shape and dtype, lookups must find it, and
// ReadF32 must convert the float tensors (and refuse the rest with InvalidArgument).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "model/safetensors.h"

namespace st = anvil::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Tighter caps than the defaults keep each input's work small without hiding any code path.
  st::ReadLimits limits;
  limits.max_header_bytes = 1 << 20;
  limits.max_tensors = 1 << 12;
  limits.max_metadata = 1 << 12;
  auto file = st::SafetensorsFile::FromBuffer("fuzz.safetensors", absl::MakeConstSpan(data, size),
                                              limits);
  if (!file.ok()) {
    if (file.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  const st::SafetensorsFile& f = **file;
  const absl::Span<const uint8_t> section = f.data_section();
  if (f.file_size() != size || 8 + f.header_json().size() + section.size() != size) std::abort();
  uint64_t covered = 0;
  uint8_t sum = 0;
  for (const st::TensorView& t : f.tensors()) {
    const int64_t n = t.num_elements();
    if (n < 0 || t.end < t.begin || t.end > section.size()) std::abort();
    if (t.bytes.data() != section.data() + t.begin || t.bytes.size() != t.end - t.begin ||
        t.bytes.data() < data || t.bytes.data() + t.bytes.size() > data + size) {
      std::abort();
    }
    if (static_cast<uint64_t>(n) * st::ElementSize(t.dtype) != t.bytes.size()) std::abort();
    for (uint8_t b : t.bytes) sum += b;  // every byte must be readable (ASan checks)
    covered += t.bytes.size();
    if (f.Find(t.name) != &t) std::abort();
    auto got = f.Get(t.name);
    if (!got.ok() || *got != &t) std::abort();
    auto floats = f.ReadF32(t.name);
    const bool is_float = t.dtype == st::ElementType::kF32 || t.dtype == st::ElementType::kF16 ||
                          t.dtype == st::ElementType::kBF16;
    if (is_float != floats.ok()) std::abort();
    if (floats.ok() && floats->size() != static_cast<size_t>(n)) std::abort();
    if (!floats.ok() && floats.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
  }
  if (covered != section.size()) std::abort();  // the tensors tile the data section
  for (const auto& [key, value] : f.metadata()) {
    const std::string* found = f.FindMetadata(key);
    if (found == nullptr || *found != value) std::abort();
  }
  if (f.names().size() != f.tensors().size()) std::abort();
  asm volatile("" : : "r"(sum));  // keeps the byte loop above from being optimized away
  return 0;
}
