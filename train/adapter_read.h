// Reading LoRA adapters back for `anvil merge`: the two formats train/export.h writes, and that
// llama.cpp / PEFT write, into LoraAdapters in the base's GGUF orientation and row order.
//   - llama.cpp adapter GGUF: general.type "adapter", adapter.type "lora", adapter.lora.alpha;
//     tensors "<base tensor>.lora_a" ne = [in, r] and ".lora_b" ne = [r, out] (F32/F16/BF16).
//     llama.cpp scales by alpha / r, or by 1 when alpha is 0 or absent; we do the same.
//   - PEFT directory: adapter_config.json (r, lora_alpha, use_rslora, target_modules) and
//     adapter_model.safetensors ("base_model.model.model.layers.<l>.<module>.lora_A.weight"
//     [r][in], lora_B [out][r]); lora_B rows of q_proj/k_proj are put into GGUF row order.
#ifndef ANVIL_TRAIN_ADAPTER_READ_H_
#define ANVIL_TRAIN_ADAPTER_READ_H_

#include <string>

#include "absl/status/statusor.h"
#include "model/gguf.h"
#include "model/lora.h"

namespace anvil::train {

// Reads a llama.cpp LoRA adapter GGUF made for `base`. InvalidArgument naming the file and
// tensor for: not an adapter, another architecture, an unpaired or unknown tensor, shapes that
// disagree with each other or with `base`, mixed ranks.
absl::StatusOr<LoraAdapters> ReadLoraGguf(const std::string& path, const gguf::GgufFile& base);

// Reads a PEFT adapter directory made for `base` (its head counts undo the Q/K row order).
// Unimplemented for PEFT features we cannot merge (DoRA, rank/alpha patterns, bias); else as
// ReadLoraGguf.
absl::StatusOr<LoraAdapters> ReadPeftAdapter(const std::string& dir, const gguf::GgufFile& base);

// The adapters in a LoRA/QLoRA training checkpoint (train/checkpoint.h; its checksum is
// verified) made for `base`: tensors "param/<base tensor>.lora_a" [r][in] and ".lora_b"
// [out][r], the scale from metadata lora.alpha and lora.rslora. FailedPrecondition for a
// checkpoint of full fine-tuning or one without the LoRA metadata; else as ReadLoraGguf.
absl::StatusOr<LoraAdapters> ReadCheckpointAdapter(const std::string& path,
                                                   const gguf::GgufFile& base);

// A directory -> ReadPeftAdapter, a ".safetensors" file -> ReadCheckpointAdapter, any other
// file -> ReadLoraGguf. NotFound when `path` does not exist.
absl::StatusOr<LoraAdapters> ReadAdapter(const std::string& path, const gguf::GgufFile& base);

}  // namespace anvil::train

#endif  // ANVIL_TRAIN_ADAPTER_READ_H_
