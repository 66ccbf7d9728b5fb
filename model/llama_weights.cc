// Binds GGUF tensors to the llama layer structure, checking names, shapes and types.
#include "model/llama_weights.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/status_macros.h"
#include "kernels/matmul.h"
#include "kernels/quantize.h"

namespace anvil {
namespace {

absl::StatusOr<const gguf::TensorInfo*> Find(const gguf::GgufFile& f, const std::string& name) {
  const gguf::TensorInfo* t = f.FindTensor(name);
  if (t == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(f.name(), ": tensor ", name, " is missing"));
  }
  return t;
}

absl::StatusOr<DType> KernelType(const gguf::GgufFile& f, const gguf::TensorInfo& t) {
  std::optional<DType> d = gguf::ToDType(t.ggml_type);
  if (!d.has_value()) {
    const gguf::GgmlTypeInfo* info = gguf::FindGgmlType(t.ggml_type);
    return absl::UnimplementedError(absl::StrCat(
        f.name(), ": tensor ", t.name, " has type ", info ? info->name : "unknown",
        " which the kernels cannot compute with yet (supported: F32 F16 BF16 Q8_0 Q4_0 Q4_1)"));
  }
  return *d;
}

absl::StatusOr<WeightMatrix> Matrix(const gguf::GgufFile& f, const std::string& name,
                                    int64_t rows, int64_t cols) {
  ANVIL_ASSIGN_OR_RETURN(const gguf::TensorInfo* t, Find(f, name));
  if (t->shape.size() != 2 || t->shape[0] != cols || t->shape[1] != rows) {
    return absl::InvalidArgumentError(absl::StrCat(f.name(), ": tensor ", name, " has shape [",
                                                   absl::StrJoin(t->shape, ", "),
                                                   "], expected [", cols, ", ", rows, "]"));
  }
  WeightMatrix m;
  m.name = name;
  ANVIL_ASSIGN_OR_RETURN(m.type, KernelType(f, *t));
  m.rows = rows;
  m.cols = cols;
  m.data = t->data;
  return m;
}

absl::StatusOr<const float*> Vector(const gguf::GgufFile& f, const std::string& name, int64_t n,
                                    std::vector<std::vector<float>>* owned) {
  ANVIL_ASSIGN_OR_RETURN(const gguf::TensorInfo* t, Find(f, name));
  if (t->num_elements() != n || t->shape[0] != n) {
    return absl::InvalidArgumentError(absl::StrCat(f.name(), ": tensor ", name, " has shape [",
                                                   absl::StrJoin(t->shape, ", "),
                                                   "], expected [", n, "]"));
  }
  ANVIL_ASSIGN_OR_RETURN(DType d, KernelType(f, *t));
  if (d == DType::kF32 && reinterpret_cast<uintptr_t>(t->data) % alignof(float) == 0) {
    return reinterpret_cast<const float*>(t->data);
  }
  owned->emplace_back(static_cast<size_t>(n));
  DequantizeRow(d, t->data, owned->back().data(), n);
  return owned->back().data();
}

}  // namespace

absl::StatusOr<LlamaWeights> BindLlamaWeights(const gguf::GgufFile& f, const LlamaConfig& c) {
  LlamaWeights w;
  w.owned.reserve(static_cast<size_t>(2 * c.n_layer + 1));
  ANVIL_ASSIGN_OR_RETURN(w.token_embd, Matrix(f, "token_embd.weight", c.n_vocab, c.n_embd));
  ANVIL_ASSIGN_OR_RETURN(w.output_norm, Vector(f, "output_norm.weight", c.n_embd, &w.owned));
  if (c.tied_embeddings) {
    w.output = w.token_embd;
  } else {
    ANVIL_ASSIGN_OR_RETURN(w.output, Matrix(f, "output.weight", c.n_vocab, c.n_embd));
  }
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string b = absl::StrCat("blk.", i, ".");
    LayerWeights& l = w.layers[static_cast<size_t>(i)];
    ANVIL_ASSIGN_OR_RETURN(l.attn_norm, Vector(f, b + "attn_norm.weight", c.n_embd, &w.owned));
    ANVIL_ASSIGN_OR_RETURN(l.wq, Matrix(f, b + "attn_q.weight", c.q_dim(), c.n_embd));
    ANVIL_ASSIGN_OR_RETURN(l.wk, Matrix(f, b + "attn_k.weight", c.kv_dim(), c.n_embd));
    ANVIL_ASSIGN_OR_RETURN(l.wv, Matrix(f, b + "attn_v.weight", c.kv_dim(), c.n_embd));
    ANVIL_ASSIGN_OR_RETURN(l.wo, Matrix(f, b + "attn_output.weight", c.n_embd, c.q_dim()));
    ANVIL_ASSIGN_OR_RETURN(l.ffn_norm, Vector(f, b + "ffn_norm.weight", c.n_embd, &w.owned));
    ANVIL_ASSIGN_OR_RETURN(l.w_gate, Matrix(f, b + "ffn_gate.weight", c.n_ff, c.n_embd));
    ANVIL_ASSIGN_OR_RETURN(l.w_up, Matrix(f, b + "ffn_up.weight", c.n_ff, c.n_embd));
    ANVIL_ASSIGN_OR_RETURN(l.w_down, Matrix(f, b + "ffn_down.weight", c.n_embd, c.n_ff));
  }
  return w;
}

absl::Status MatMulSameInput(const ExecContext& ctx, const float* in, int64_t rows,
                             std::initializer_list<WeightProduct> products) {
  MatMulArgs calls[8];
  if (products.size() > 8) return absl::InvalidArgumentError("MatMulSameInput: at most 8");
  size_t n = 0;
  bool one_type = true;
  for (const WeightProduct& p : products) {
    calls[n++] = {p.w->type, p.w->data, in, p.out, rows, p.w->rows, p.w->cols};
    one_type = one_type && p.w->type == products.begin()->w->type &&
               p.w->cols == products.begin()->w->cols;
  }
  if (one_type) return MatMulShared(ctx, absl::MakeConstSpan(calls, n));
  for (size_t i = 0; i < n; ++i) ANVIL_RETURN_IF_ERROR(MatMul(ctx, calls[i]));
  return absl::OkStatus();
}

}  // namespace anvil
