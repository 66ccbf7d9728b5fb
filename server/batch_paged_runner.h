// The continuous-batching runner: one forward pass per step over the new tokens of all
// sequences (decode tokens and prompt chunks concatenated into one [T][C] activation, so each
// weight matrix is multiplied once per step), attention per sequence over its blocks of the
// shared KV pool, LoRA deltas on the rows of the sequences that use an adapter.
//
// Numerics: every op but attention is row-independent for quantized weights (the CPU GEMM and
// GEMV tiles share llama.cpp's per-row order), and attention runs per sequence with its own T,
// over the sequence's keys gathered in position order. A sequence's logits are then
// bit-identical to anvil::Context's for the same token chunks (F32/F16 weights pick another
// matmul order when a call has >= 2 rows, so there they may differ in the last bits).
#ifndef ANVIL_SERVER_BATCH_PAGED_RUNNER_H_
#define ANVIL_SERVER_BATCH_PAGED_RUNNER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kernels/core/thread_pool.h"
#include "model/llama_model.h"
#include "server/adapter_store.h"
#include "server/batch_runner.h"
#include "server/kv_cache.h"

namespace anvil::server {

struct PagedRunnerOptions {
  int threads = 2;
  int64_t n_ctx = 2048;
  int64_t block_tokens = 16;
  int64_t n_blocks = 0;
  int64_t max_step_tokens = 512;
  bool prefix_cache = true;
  // KV cache elements: kF32 (the default; the same bits as a single Context) or kF16 (half the
  // memory and bandwidth; K and V rounded to F16 as they are stored, like llama.cpp's default
  // cache).
  DType kv_type = DType::kF32;
  // How quantized matmuls sum (kernels/backend.h): llama.cpp's order (the same bits as a single
  // Context), or the block-sum order (the same bits for a sequence alone or in any batch, and
  // a faster batched step; not llama.cpp's bits).
  MatMulNumerics matmul = MatMulNumerics::kLlamaCpp;
};

class PagedRunner final : public BatchRunner {
 public:
  PagedRunner(const LlamaModel& model, const PagedRunnerOptions& options);

  bool Open(int64_t seq, absl::Span<const int32_t> prompt, int64_t max_positions,
            uint64_t adapter_key, int64_t* cached) override;
  void Close(int64_t seq) override;
  absl::Status Forward(absl::Span<const StepItem> items, float* logits) override;
  bool Fits(int64_t max_positions) const override;
  int64_t blocks_used() const override { return pool_.used(); }
  int64_t blocks_total() const override { return pool_.n_blocks(); }
  ThreadPool* pool() override { return threads_.get(); }

 private:
  struct SeqKv {
    std::vector<int32_t> blocks;   // block table: position p lives in blocks[p / block_tokens]
    int64_t past = 0;              // positions with KV
    int64_t reserved = 0;          // blocks this sequence may still allocate
    std::vector<int32_t> prompt;   // for registering full prompt blocks
    uint64_t adapter_key = 0;
    int64_t registered = 0;        // leading blocks already registered in the prefix cache
    uint64_t chain = 0;            // ChainHash over the registered blocks
  };
  // Rows [row, row + n) of one LoRA-adapted group.
  struct Segment {
    int64_t row = 0, n = 0;
    const AdapterWeights* adapter = nullptr;
  };
  int64_t BlocksFor(int64_t positions) const {
    return (positions + pool_.block_tokens() - 1) / pool_.block_tokens();
  }
  // y [rows][out] += scale * B (A x) for every segment whose adapter adapts (layer, module).
  absl::Status ApplyLora(absl::Span<const Segment> segs, int64_t layer, LoraModule module,
                         const float* x, int64_t in, float* y, int64_t out);
  absl::Status MatMulRows(const WeightMatrix& m, const float* in, float* out, int64_t rows);
  // Rows [row0, row0 + n) of this step's k_/v_ (the sequence's new positions from kv.past on)
  // into its blocks of `layer`.
  void StoreKv(const SeqKv& kv, int64_t layer, int64_t row0, int64_t n);
  // The blocks holding positions [0, n) of `kv` in `layer`, for a paged Attention call.
  template <class T>
  void BlockTable(const SeqKv& kv, int64_t layer, int64_t n, std::vector<const T*>* k,
                  std::vector<const T*>* v);
  void RegisterPromptBlocks(SeqKv& kv);

  const LlamaModel& model_;
  PagedRunnerOptions options_;
  std::unique_ptr<ThreadPool> threads_;
  ExecContext exec_;
  KvPool pool_;
  // The blocks keep their keys in lanes ([Hkv][D][block_tokens], AttentionArgs::
  // blocks_transposed) where the attention kernel reads that layout in place, and always for
  // an F16 cache.
  bool transposed_ = false;
  bool half_ = false;
  int64_t reserved_total_ = 0;  // sum of SeqKv::reserved
  absl::flat_hash_map<int64_t, SeqKv> seqs_;
  // Scratch for one step of up to max_step_tokens rows.
  std::vector<float> x_, h_, q_, k_, v_, attn_, proj_, gate_, up_, lora_a_, lora_b_;
  // Per pool thread: one sequence's block table (K and V of one layer), float or F16.
  std::vector<std::vector<const float*>> kblocks_, vblocks_;
  std::vector<std::vector<const uint16_t*>> kblocks16_, vblocks16_;
  std::vector<int32_t> tokens_, pos_;
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_BATCH_PAGED_RUNNER_H_
