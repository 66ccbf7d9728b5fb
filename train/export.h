// Exports of a fine-tuned model: LoRA adapters as a PEFT directory (adapter_model.safetensors +
// adapter_config.json, HF row order) or as a llama.cpp LoRA adapter GGUF, and a merged GGUF
// (base dequantized, W + scale·B·A and/or fully fine-tuned tensors, F32 or F16). Training the
// adapters and quantizing the result are other modules' business.
#ifndef ANVIL_TRAIN_EXPORT_H_
#define ANVIL_TRAIN_EXPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/dtype.h"
#include "model/gguf.h"
#include "model/lora.h"

namespace anvil::train {

// Q/K row order (notes §2.4). Within each head of d = rows / n_heads rows, GGUF row 2i+j holds
// HF row j·d/2 + i (i < d/2, j ∈ {0,1}). m: [rows][cols] row-major -> the same rows reordered.
std::vector<float> GgufToHfRows(absl::Span<const float> m, int64_t rows, int64_t cols,
                                int64_t n_heads);
std::vector<float> HfToGgufRows(absl::Span<const float> m, int64_t rows, int64_t cols,
                                int64_t n_heads);

// "base_model.model.model.layers.<l>.<PeftPath(module)>.lora_A.weight" (lora_B for !a).
std::string PeftTensorName(const LoraPair& pair, bool a);
// adapter_config.json as PEFT (0.13) writes it: every LoraConfig field, sorted keys, indent 2.
std::string PeftAdapterConfigJson(const LoraConfig& config, const std::string& base_model_name);

// Writes <dir>/adapter_model.safetensors (F32; lora_A [r][in], lora_B [out][r]; the rows of
// lora_B for q and k put back in HF order with n_head resp. n_head_kv heads; A is unaffected)
// and <dir>/adapter_config.json, both atomically; creates `dir` if missing. InvalidArgument for
// inconsistent pairs (sizes, rank other than config.rank, a module not in config.targets, a
// duplicate, q/k rows not divisible into heads of even size).
absl::Status WritePeftAdapter(const LoraAdapters& lora, const std::string& dir,
                              const std::string& base_model_name, int64_t n_head,
                              int64_t n_head_kv);

// Writes the llama.cpp LoRA adapter GGUF: general.type "adapter", general.architecture from
// `base`, adapter.type "lora", adapter.lora.alpha (f32; alpha·sqrt(r) under rslora, so that
// llama.cpp's alpha/r equals our alpha/sqrt(r)); tensors "<base name>.lora_a" ne = [in, r] and
// ".lora_b" ne = [r, out], F32, GGUF row order as trained. InvalidArgument when a pair's base
// tensor is missing from `base` or has another shape.
absl::Status WriteLoraGguf(const LoraAdapters& lora, const gguf::GgufFile& base,
                           const std::string& path);

// Writes a merged model: all of `base`'s metadata (general.file_type set to 0 for F32, 1 for
// F16) and every tensor, dequantized to float, then
//   - replaced by `replaced[name]` when present (full fine-tuning; row-major, GGUF orientation,
//     as many floats as the tensor has elements),
//   - plus scale·B·A when `lora` (may be null) has a pair for it (the delta is summed in float
//     over the rank, as PEFT's merge does, then scaled and added);
// 2-D and larger tensors are stored as `out` (kF32 or kF16, round to nearest even as ggml),
// 1-D tensors (norms) always as F32, which llama.cpp requires. InvalidArgument for an unknown
// replaced name, a size mismatch, or another `out`; Unimplemented for a base tensor type we
// cannot dequantize.
absl::Status WriteMergedGguf(
    const gguf::GgufFile& base, const LoraAdapters* lora,
    const absl::flat_hash_map<std::string, const std::vector<float>*>& replaced, DType out,
    const std::string& path);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_EXPORT_H_
