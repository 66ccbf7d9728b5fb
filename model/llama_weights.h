// Views of a llama-family model's tensors inside a mapped GGUF file (no copies, except 1-D norm
// weights stored in a non-F32 type, which are dequantized once). Validates every shape and type.
#ifndef ANVIL_MODEL_LLAMA_WEIGHTS_H_
#define ANVIL_MODEL_LLAMA_WEIGHTS_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "kernels/dtype.h"
#include "model/gguf.h"
#include "model/llama_config.h"

namespace anvil {

// A 2-D weight matrix [rows][cols] (GGUF ne = [cols, rows]); each row is one output channel.
struct WeightMatrix {
  std::string name;
  DType type = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
};

struct LayerWeights {
  const float* attn_norm = nullptr;  // [C]
  WeightMatrix wq;                   // [H*D][C]
  WeightMatrix wk;                   // [Hkv*D][C]
  WeightMatrix wv;                   // [Hkv*D][C]
  WeightMatrix wo;                   // [C][H*D]
  const float* ffn_norm = nullptr;   // [C]
  WeightMatrix w_gate;               // [F][C]
  WeightMatrix w_up;                 // [F][C]
  WeightMatrix w_down;               // [C][F]
};

struct LlamaWeights {
  WeightMatrix token_embd;           // [V][C]
  const float* output_norm = nullptr;  // [C]
  WeightMatrix output;               // [V][C]; token_embd when tied
  std::vector<LayerWeights> layers;
  std::vector<std::vector<float>> owned;  // dequantized norm vectors, if any
};

// InvalidArgument naming the tensor for a missing tensor or a wrong shape; Unimplemented for a
// tensor type the kernels cannot compute with.
absl::StatusOr<LlamaWeights> BindLlamaWeights(const gguf::GgufFile& file, const LlamaConfig& c);

// out_i [rows][w_i.rows] = in [rows][cols] x w_i^T for each (w_i, out_i): one MatMulShared when
// all the matrices have one type (in is prepared once), else one MatMul each. Same bits.
struct WeightProduct {
  const WeightMatrix* w;
  float* out;
};
absl::Status MatMulSameInput(const ExecContext& ctx, const float* in, int64_t rows,
                             std::initializer_list<WeightProduct> products);

}  // namespace anvil

#endif  // ANVIL_MODEL_LLAMA_WEIGHTS_H_
