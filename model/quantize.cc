// llama-quantize's per-tensor decisions and byte conversion. Sources (read for facts, nothing
// copied): llama.cpp src/llama-quant.cpp (tensor_allows_quantization, llama_tensor_get_type_impl,
// tensor_type_fallback, llama_model_quantize_impl), ggml-quants.c (*_ref row quantizers,
// ggml_validate_row_data), gguf.cpp (gguf_set_val_* removes the key and appends it). Only the
// rules that can fire for ftypes Q8_0/Q4_0/Q4_1 without an importance matrix are implemented;
// the K-quant and IQ mixes never apply to these ftypes.
#include "model/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/core/half.h"
#include "kernels/core/status_macros.h"
#include "kernels/quantize.h"
#include "model/gguf_writer.h"

namespace anvil {
namespace {

using gguf::GgufFile;
using gguf::TensorInfo;
using gguf::Value;

constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ8_0 = 8, kQ6_K = 14, kBF16 = 30;
constexpr uint32_t kQuantizationVersion = 2;  // GGML_QNT_VERSION

const char* GgmlName(uint32_t id) {
  const gguf::GgmlTypeInfo* info = gguf::FindGgmlType(id);
  return info != nullptr ? info->name : "unknown";
}

int64_t BlockElems(uint32_t id) {
  const gguf::GgmlTypeInfo* info = gguf::FindGgmlType(id);
  return info != nullptr ? info->block_elems : 1;
}

bool IsBlockQuantized(uint32_t id) { return BlockElems(id) > 1; }

// ggml_n_dims: trailing dimensions of size 1 do not count.
int NDims(const TensorInfo& t) {
  int n = static_cast<int>(t.shape.size());
  while (n > 1 && t.shape[n - 1] == 1) --n;
  return n;
}

// tensor_allows_quantization (llama-quant.cpp): 2-D or 3-D tensors whose name ends in "weight",
// minus norms, MoE gates, positional / token-type embeddings and the small special tensors of
// other architectures (kept so a non-llama file is treated as llama.cpp treats it).
bool AllowsQuantization(const TensorInfo& t) {
  if (NDims(t) < 2) return false;
  const std::string& n = t.name;
  if (!absl::EndsWith(n, "weight")) return false;
  static const char* const kNever[] = {"_norm.weight",
                                       "ffn_gate_inp.weight",
                                       "ffn_gate_tid2eid.weight",
                                       "altup",
                                       "laurel",
                                       "per_layer_model_proj",
                                       "ssm_conv1d",
                                       "shortconv.conv.weight",
                                       "indexer.k_proj.weight",
                                       "indexer.q_proj.weight",
                                       "time_mix_first.weight",
                                       "time_mix_w0.weight",
                                       "time_mix_w1.weight",
                                       "time_mix_w2.weight",
                                       "time_mix_v0.weight",
                                       "time_mix_v1.weight",
                                       "time_mix_v2.weight",
                                       "time_mix_a0.weight",
                                       "time_mix_a1.weight",
                                       "time_mix_a2.weight",
                                       "time_mix_g1.weight",
                                       "time_mix_g2.weight",
                                       "time_mix_decay_w1.weight",
                                       "time_mix_decay_w2.weight",
                                       "time_mix_lerp_fused.weight",
                                       "attn_rel_b.weight",
                                       ".position_embd",
                                       "sam.pos_embd",
                                       "sam.neck.",
                                       "sam.net_",
                                       ".rel_pos",
                                       ".patch_embd",
                                       ".patch_merger",
                                       "a.rvq.codebook",
                                       "mm.a.code_embd"};
  for (const char* s : kNever) {
    if (absl::StrContains(n, s)) return false;
  }
  return n != "position_embd.weight" && n != "token_types.weight";
}

enum class Category { kTokenEmbd, kOutput, kAttnV, kAttnK, kOther };

// tensor_get_category, reduced to the categories whose rules can fire here.
Category CategoryOf(const std::string& n) {
  if (n == "output.weight") return Category::kOutput;
  if (n == "token_embd.weight" || n == "per_layer_token_embd.weight") return Category::kTokenEmbd;
  if (absl::StrContains(n, "attn_qkv.weight") || absl::StrContains(n, "attn_kv_b.weight") ||
      absl::StrContains(n, "attn_v.weight")) {
    return Category::kAttnV;  // category_is_attn_v
  }
  if (absl::StrContains(n, "attn_k.weight")) return Category::kAttnK;
  return Category::kOther;
}

int64_t ExpertCount(const GgufFile& f) {
  auto arch = f.GetString("general.architecture");
  if (!arch.ok()) return 0;
  auto n = f.GetInt(*arch + ".expert_count");
  return n.ok() ? *n : 0;
}

// Finite check of a float tensor, as llama.cpp's loader does with check_tensors (it validates
// every tensor of the input, quantized or copied: ggml_validate_row_data rejects NaN and Inf).
absl::Status CheckFinite(const float* v, int64_t n, int64_t first, const TensorInfo& t,
                         const std::string& file) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", t.name, "' has invalid data: element ", first + i, " is ",
          std::isnan(v[i]) ? "NaN" : (v[i] > 0 ? "+Inf" : "-Inf"), " (llama.cpp refuses it too)"));
    }
  }
  return absl::OkStatus();
}

std::optional<DType> FloatSource(uint32_t id) {
  if (id == kF32) return DType::kF32;
  if (id == kF16) return DType::kF16;
  if (id == kBF16) return DType::kBF16;
  return std::nullopt;
}

// Finite check of a tensor that is copied unchanged (F32/F16/BF16 only; quantized tensors are
// copied as they are).
absl::Status CheckCopied(const TensorInfo& t, const std::string& file) {
  const std::optional<DType> src = FloatSource(t.ggml_type);
  if (!src) return absl::OkStatus();
  const int64_t n = t.num_elements();
  constexpr int64_t kChunk = 4096;
  std::vector<float> buf(kChunk);
  const int64_t elem_bytes = t.ggml_type == kF32 ? 4 : 2;
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t m = std::min(kChunk, n - i);
    DequantizeRow(*src, t.data + i * elem_bytes, buf.data(), m);
    ANVIL_RETURN_IF_ERROR(CheckFinite(buf.data(), m, i, t, file));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<QuantFileType> ParseQuantFileType(std::string_view name) {
  const std::string s = absl::AsciiStrToLower(std::string(name));
  if (s == "q8_0") return QuantFileType::kQ8_0;
  if (s == "q4_0") return QuantFileType::kQ4_0;
  if (s == "q4_1") return QuantFileType::kQ4_1;
  return absl::InvalidArgumentError(
      absl::StrCat("quantization type '", std::string(name), "': expected q8_0, q4_0 or q4_1"));
}

const char* QuantFileTypeName(QuantFileType t) {
  switch (t) {
    case QuantFileType::kQ4_0:
      return "q4_0";
    case QuantFileType::kQ4_1:
      return "q4_1";
    case QuantFileType::kQ8_0:
      return "q8_0";
  }
  return "?";
}

uint32_t DefaultGgmlType(QuantFileType t) {
  switch (t) {
    case QuantFileType::kQ4_0:
      return kQ4_0;
    case QuantFileType::kQ4_1:
      return kQ4_1;
    case QuantFileType::kQ8_0:
      return kQ8_0;
  }
  return kQ8_0;
}

absl::StatusOr<uint32_t> ChooseTensorType(const GgufFile& file, const TensorInfo& t,
                                          QuantFileType type, const QuantizeOptions& options) {
  // Not quantizable: the tensor keeps its type and bytes.
  if (!AllowsQuantization(t)) return t.ggml_type;
  const Category cat = CategoryOf(t.name);
  // An explicit output type short-circuits for output.weight (llama_tensor_get_type).
  if (options.output_tensor_type && cat == Category::kOutput) return *options.output_tensor_type;

  uint32_t new_type = DefaultGgmlType(type);
  if (!options.pure) {
    // "assume tied until we see output.weight" (init_quantize_state_counters).
    const bool tied = file.FindTensor("output.weight") == nullptr;
    if (cat == Category::kOutput || (tied && cat == Category::kTokenEmbd)) {
      // The output tensor (or the tied embeddings) gets more bits: Q8_0 when ne0 is not a
      // multiple of the default type's block (or for falcon), else Q6_K unless already Q8_0.
      if (options.output_tensor_type) {
        new_type = *options.output_tensor_type;
      } else {
        auto arch = file.GetString("general.architecture");
        if ((arch.ok() && *arch == "falcon") || t.shape[0] % BlockElems(new_type) != 0) {
          new_type = kQ8_0;
        } else if (new_type != kQ8_0) {
          new_type = kQ6_K;
        }
      }
    } else if ((cat == Category::kAttnV || cat == Category::kAttnK) && ExpertCount(file) == 8) {
      new_type = kQ8_0;  // "for the 8-expert model, bumping this to Q8_0 trades just ~128MB"
    }
  }
  // tensor_type_fallback: ne0 must be a multiple of the block size. Q6_K falls back to Q8_0
  // (F16 if even that does not fit); Q8_0/Q4_0/Q4_1 have no fallback (llama.cpp throws).
  if (IsBlockQuantized(new_type) && t.shape[0] % BlockElems(new_type) != 0) {
    if (new_type == kQ6_K) {
      new_type = t.shape[0] % BlockElems(kQ8_0) == 0 ? kQ8_0 : kF16;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", t.name, "': ne0 = ", t.shape[0],
                                                     " is not a multiple of ", BlockElems(new_type),
                                                     ", which ", GgmlName(new_type), " needs"));
    }
  }
  if (new_type == kQ6_K) {
    return absl::UnimplementedError(absl::StrCat(
        "tensor '", t.name, "': llama-quantize would store it as Q6_K (ne0 = ", t.shape[0],
        " is a multiple of 256), which anvil does not write; use --pure or --output-type q8_0"));
  }
  return new_type;
}

absl::StatusOr<std::string> ConvertTensor(const TensorInfo& t, uint32_t to,
                                          const std::string& file) {
  const std::optional<DType> src = FloatSource(t.ggml_type);
  if (!src) {
    // llama.cpp: "requantizing from type %s is disabled" (allow_requantize is off by default).
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": tensor '", t.name, "' is ", GgmlName(t.ggml_type),
        "; quantize from an F32, F16 or BF16 file (requantizing is disabled, as in llama.cpp)"));
  }
  std::optional<DType> dst = gguf::ToDType(to);
  if (!dst || *dst == DType::kBF16) {
    return absl::UnimplementedError(
        absl::StrCat("tensor '", t.name, "': cannot write type ", GgmlName(to)));
  }
  if (t.shape.empty() || t.shape[0] < 1) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": tensor '", t.name, "' is empty"));
  }
  const int64_t ne0 = t.shape[0];
  const int64_t n_rows = t.num_elements() / ne0;
  ANVIL_ASSIGN_OR_RETURN(const int64_t out_row_bytes, RowBytes(*dst, ne0));
  const int64_t in_elem_bytes = *src == DType::kF32 ? 4 : 2;
  std::string out(static_cast<size_t>(out_row_bytes * n_rows), '\0');
  std::vector<float> row(static_cast<size_t>(ne0));  // [ne0]
  for (int64_t r = 0; r < n_rows; ++r) {
    DequantizeRow(*src, t.data + r * ne0 * in_elem_bytes, row.data(), ne0);
    ANVIL_RETURN_IF_ERROR(CheckFinite(row.data(), ne0, r * ne0, t, file));
    char* y = out.data() + r * out_row_bytes;
    switch (*dst) {
      case DType::kF32:
        std::memcpy(y, row.data(), static_cast<size_t>(ne0) * sizeof(float));
        break;
      case DType::kF16:
        for (int64_t i = 0; i < ne0; ++i) {
          const uint16_t h = FloatToHalf(row[i]);
          std::memcpy(y + 2 * i, &h, sizeof(h));
        }
        break;
      case DType::kQ8_0:
        QuantizeRowQ8_0(row.data(), reinterpret_cast<BlockQ8_0*>(y), ne0);
        break;
      case DType::kQ4_0:
        QuantizeRowQ4_0(row.data(), reinterpret_cast<BlockQ4_0*>(y), ne0);
        break;
      case DType::kQ4_1:
        QuantizeRowQ4_1(row.data(), reinterpret_cast<BlockQ4_1*>(y), ne0);
        break;
      case DType::kBF16:
        break;  // excluded above
    }
  }
  return out;
}

absl::StatusOr<QuantizeReport> QuantizeGguf(const std::string& in_path, const std::string& out_path,
                                            QuantFileType type, const QuantizeOptions& options) {
  if (options.output_tensor_type) {
    const uint32_t o = *options.output_tensor_type;
    if (o != kF32 && o != kF16 && o != kQ8_0 && o != kQ4_0 && o != kQ4_1) {
      return absl::InvalidArgumentError(absl::StrCat("output tensor type ", GgmlName(o),
                                                     ": expected f32, f16, q8_0, q4_0 or q4_1"));
    }
  }
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> in, GgufFile::Open(in_path));
  QuantizeReport report;
  report.input_bytes = in->file_size();

  gguf::GgufWriter w;
  // All metadata in order, minus the split keys; then, as gguf_set_val_u32 removes and appends,
  // general.quantization_version and general.file_type at the end, in that order.
  for (const auto& [key, value] : in->metadata()) {
    if (key == "general.quantization_version" || key == "general.file_type" || key == "split.no" ||
        key == "split.count" || key == "split.tensors.count") {
      continue;
    }
    w.Set(key, value);
  }
  w.Set("general.quantization_version", Value::Uint32(kQuantizationVersion));
  w.Set("general.file_type", Value::Uint32(static_cast<uint32_t>(type)));

  for (const TensorInfo& t : in->tensors()) {
    ANVIL_ASSIGN_OR_RETURN(const uint32_t to, ChooseTensorType(*in, t, type, options));
    std::string bytes;
    if (to == t.ggml_type) {
      ANVIL_RETURN_IF_ERROR(CheckCopied(t, in_path));
      bytes.assign(reinterpret_cast<const char*>(t.data), t.size_bytes);
    } else {
      ANVIL_ASSIGN_OR_RETURN(bytes, ConvertTensor(t, to, in_path));
      ++report.quantized;
    }
    ANVIL_RETURN_IF_ERROR(w.AddTensor(t.name, t.shape, to, std::move(bytes)));
    ++report.type_counts[GgmlName(to)];
    ++report.tensors;
  }
  ANVIL_RETURN_IF_ERROR(w.WriteFile(out_path));
  std::error_code ec;
  report.output_bytes = std::filesystem::file_size(out_path, ec);
  return report;
}

}  // namespace anvil
