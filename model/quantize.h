// Whole-file GGUF quantization as llama.cpp's llama-quantize does it (notes §6): F32/F16/BF16
// tensors -> Q8_0, Q4_0 or Q4_1 with ggml's reference rounding (the row quantizers of
// kernels/quantize.h), the same per-tensor type choices, all metadata and the tokenizer kept,
// general.file_type and general.quantization_version set. Oracle: tests/fixtures/quantize/
// (scripts/reference/quantize_golden.py, llama-cpp-python's llama_model_quantize).
#ifndef ANVIL_MODEL_QUANTIZE_H_
#define ANVIL_MODEL_QUANTIZE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/gguf.h"

namespace anvil {

// The file types `anvil quantize` writes (llama_ftype values in general.file_type).
enum class QuantFileType : uint32_t { kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 7 };

// "q8_0" | "q4_0" | "q4_1" (case-insensitive) -> type; InvalidArgument otherwise.
absl::StatusOr<QuantFileType> ParseQuantFileType(std::string_view name);
const char* QuantFileTypeName(QuantFileType t);  // "q8_0", ...
// The ggml type every quantizable tensor gets by default (llama_ftype_get_default_type).
uint32_t DefaultGgmlType(QuantFileType t);

struct QuantizeOptions {
  // llama-quantize --pure: every quantizable tensor gets the default type (no output /
  // token_embd special case).
  bool pure = false;
  // llama-quantize --output-tensor-type: the ggml type of output.weight (token_embd.weight when
  // the embeddings are tied). One of F32, F16, Q8_0, Q4_0, Q4_1 (ggml ids 0, 1, 8, 2, 3).
  std::optional<uint32_t> output_tensor_type;
};

// What QuantizeGguf did.
struct QuantizeReport {
  uint64_t input_bytes = 0;  // file sizes
  uint64_t output_bytes = 0;
  int64_t tensors = 0;
  int64_t quantized = 0;                       // tensors converted to another type
  std::map<std::string, int64_t> type_counts;  // output ggml type name -> tensors
};

// The ggml type llama-quantize (llama.cpp 0.3.36 / llama-quant.cpp) gives tensor `t` of `file`
// for `type`; see quantize.cc for each rule and its source. Unimplemented when llama.cpp would
// choose a type we do not write (Q6_K for an output tensor whose ne0 is a multiple of 256), with
// a message naming the tensor and the way out (--pure or --output-type); InvalidArgument when ne0
// is not a multiple of the block size (llama.cpp throws there too).
absl::StatusOr<uint32_t> ChooseTensorType(const gguf::GgufFile& file, const gguf::TensorInfo& t,
                                          QuantFileType type, const QuantizeOptions& options);

// The bytes of tensor `t` (F32, F16 or BF16) converted to ggml type `to` (F32, F16, Q8_0, Q4_0,
// Q4_1), rows of ne0 elements quantized independently. InvalidArgument naming `file`, the tensor
// and the element when a value is NaN or infinite (llama.cpp refuses such input: "tensor '...'
// has invalid data"); Unimplemented for another source type.
absl::StatusOr<std::string> ConvertTensor(const gguf::TensorInfo& t, uint32_t to,
                                          const std::string& file);

// Reads the GGUF at `in_path`, writes the quantized model to `out_path` atomically (temporary,
// fsync, rename; `out_path` untouched on any error). Tensors keep the input's order; tensors
// llama.cpp does not quantize (1-D, norms, ...) are copied byte for byte. NotFound for a
// missing input; InvalidArgument/Unimplemented naming the tensor for data it cannot quantize
// (NaN/Inf, a quantized tensor that would need requantizing, an unknown type, a bad shape).
absl::StatusOr<QuantizeReport> QuantizeGguf(const std::string& in_path, const std::string& out_path,
                                            QuantFileType type,
                                            const QuantizeOptions& options = {});

}  // namespace anvil

#endif  // ANVIL_MODEL_QUANTIZE_H_
