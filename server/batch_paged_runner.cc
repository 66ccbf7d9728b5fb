// PagedRunner: block tables, reservations and the prefix cache (Open/Close), and the batched
// forward pass (Forward). Shape legend as kernels/layer_ops.h: T rows of this step, C channels,
// H/Hkv heads of D dims, F feed-forward width, R rows that produce logits.
#include "server/batch_paged_runner.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "kernels/layer_ops.h"
#include "kernels/matmul.h"

namespace anvil::server {

PagedRunner::PagedRunner(const LlamaModel& model, const PagedRunnerOptions& options)
    : model_(model),
      options_(options),
      threads_(std::make_unique<ThreadPool>(options.threads)),
      pool_(model.config().n_layer, model.config().kv_dim(), options.block_tokens,
            options.n_blocks, options.kv_type == DType::kF16 ? 2 : 4) {
  exec_.backend = Backend::kCpu;
  exec_.pool = threads_.get();
  exec_.matmul = options.matmul;
  const LlamaConfig& c = model.config();
  half_ = options.kv_type == DType::kF16;
  transposed_ = half_ || TransposedKvBlocksAreFast(exec_, c.head_dim, options.block_tokens);
  const size_t t = static_cast<size_t>(options.max_step_tokens);
  x_.resize(t * c.n_embd);
  h_.resize(t * c.n_embd);
  q_.resize(t * c.q_dim());
  k_.resize(t * c.kv_dim());
  v_.resize(t * c.kv_dim());
  attn_.resize(t * c.q_dim());
  proj_.resize(t * c.n_embd);
  gate_.resize(t * c.n_ff);
  up_.resize(t * c.n_ff);
  kblocks_.resize(static_cast<size_t>(options.threads));
  vblocks_.resize(static_cast<size_t>(options.threads));
  kblocks16_.resize(static_cast<size_t>(options.threads));
  vblocks16_.resize(static_cast<size_t>(options.threads));
  tokens_.resize(t);
  pos_.resize(t);
}

bool PagedRunner::Fits(int64_t max_positions) const {
  return max_positions <= options_.n_ctx && BlocksFor(max_positions) <= pool_.n_blocks();
}

bool PagedRunner::Open(int64_t seq, absl::Span<const int32_t> prompt, int64_t max_positions,
                       uint64_t adapter_key, int64_t* cached) {
  const int64_t bt = pool_.block_tokens();
  const int64_t need = BlocksFor(max_positions);
  // Shared prefix: whole blocks, leaving >= 2 prompt tokens to run (a 1-token pass would use the
  // decode attention order where a whole-prompt pass uses the prefill order).
  std::vector<int32_t> shared;
  uint64_t chain = adapter_key;
  int64_t revive = 0;
  if (options_.prefix_cache) {
    const int64_t p = static_cast<int64_t>(prompt.size());
    const int64_t max_blocks = p >= 2 ? (p - 2) / bt : 0;
    for (int64_t i = 0; i < max_blocks; ++i) {
      auto toks = prompt.subspan(static_cast<size_t>(i * bt), static_cast<size_t>(bt));
      const int32_t b = pool_.Find(chain, toks);
      if (b < 0) break;
      shared.push_back(b);
      revive += pool_.is_cached_free(b) ? 1 : 0;
      chain = KvPool::ChainHash(chain, toks);
    }
  }
  const int64_t own = need - static_cast<int64_t>(shared.size());
  if (pool_.available() - revive - reserved_total_ < own) return false;
  for (int32_t b : shared) pool_.Ref(b);
  SeqKv kv;
  kv.blocks = shared;
  kv.past = static_cast<int64_t>(shared.size()) * bt;
  kv.reserved = own;
  kv.prompt.assign(prompt.begin(), prompt.end());
  kv.adapter_key = adapter_key;
  kv.registered = static_cast<int64_t>(shared.size());
  kv.chain = chain;
  reserved_total_ += own;
  *cached = kv.past;
  seqs_[seq] = std::move(kv);
  return true;
}

void PagedRunner::Close(int64_t seq) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  for (int32_t b : it->second.blocks) pool_.Unref(b);
  reserved_total_ -= it->second.reserved;
  seqs_.erase(it);
}

void PagedRunner::RegisterPromptBlocks(SeqKv& kv) {
  if (!options_.prefix_cache) return;
  const int64_t bt = pool_.block_tokens();
  const int64_t limit = std::min<int64_t>(kv.past, static_cast<int64_t>(kv.prompt.size()));
  while ((kv.registered + 1) * bt <= limit) {
    auto toks = absl::Span<const int32_t>(kv.prompt).subspan(
        static_cast<size_t>(kv.registered * bt), static_cast<size_t>(bt));
    pool_.Register(kv.blocks[static_cast<size_t>(kv.registered)], kv.chain, toks);
    kv.chain = KvPool::ChainHash(kv.chain, toks);
    ++kv.registered;
  }
}

void PagedRunner::StoreKv(const SeqKv& kv, int64_t layer, int64_t row0, int64_t n) {
  const int64_t bt = pool_.block_tokens(), kvd = model_.config().kv_dim();
  for (int64_t j = 0; j < n; ++j) {
    const int64_t p = kv.past + j, r = p % bt;
    const int32_t b = kv.blocks[static_cast<size_t>(p / bt)];
    const float* ks = k_.data() + (row0 + j) * kvd;
    const float* vs = v_.data() + (row0 + j) * kvd;
    if (half_) {  // transposed, rounded to F16
      uint16_t* kd = static_cast<uint16_t*>(pool_.k(layer, b)) + r;
      uint16_t* vd = static_cast<uint16_t*>(pool_.v(layer, b)) + r;
      for (int64_t e = 0; e < kvd; ++e) {
        kd[e * bt] = FloatToHalf(ks[e]);
        vd[e * bt] = FloatToHalf(vs[e]);
      }
    } else if (transposed_) {  // element e = hk * D + i of the row goes to [e][r]
      float* kd = static_cast<float*>(pool_.k(layer, b)) + r;
      float* vd = static_cast<float*>(pool_.v(layer, b)) + r;
      for (int64_t e = 0; e < kvd; ++e) {
        kd[e * bt] = ks[e];
        vd[e * bt] = vs[e];
      }
    } else {
      std::memcpy(static_cast<float*>(pool_.k(layer, b)) + r * kvd, ks, sizeof(float) * kvd);
      std::memcpy(static_cast<float*>(pool_.v(layer, b)) + r * kvd, vs, sizeof(float) * kvd);
    }
  }
}

template <class T>
void PagedRunner::BlockTable(const SeqKv& kv, int64_t layer, int64_t n, std::vector<const T*>* k,
                             std::vector<const T*>* v) {
  const int64_t bt = pool_.block_tokens();
  const auto blocks = static_cast<size_t>((n + bt - 1) / bt);
  k->resize(blocks);
  v->resize(blocks);
  for (size_t j = 0; j < blocks; ++j) {
    (*k)[j] = static_cast<const T*>(pool_.k(layer, kv.blocks[j]));
    (*v)[j] = static_cast<const T*>(pool_.v(layer, kv.blocks[j]));
  }
}

absl::Status PagedRunner::MatMulRows(const WeightMatrix& m, const float* in, float* out,
                                     int64_t rows) {
  return MatMul(exec_, {m.type, m.data, in, out, rows, m.rows, m.cols});
}

absl::Status PagedRunner::ApplyLora(absl::Span<const Segment> segs, int64_t layer,
                                    LoraModule module, const float* x, int64_t in, float* y,
                                    int64_t out) {
  for (const Segment& s : segs) {
    if (s.adapter == nullptr) continue;
    const AdaptedMatrix* am = s.adapter->Find(layer, module);
    if (am == nullptr) continue;
    const LoraPair* p = &am->pair;
    const int64_t r = p->rank;
    lora_a_.resize(static_cast<size_t>(s.n * r));
    lora_b_.resize(static_cast<size_t>(s.n * out));
    // a [n][r] = x A^T; b [n][out] = a B^T; y += scale * b.
    ANVIL_RETURN_IF_ERROR(
        MatMul(exec_, {DType::kF32, p->a.data(), x + s.row * in, lora_a_.data(), s.n, r, in}));
    ANVIL_RETURN_IF_ERROR(
        MatMul(exec_, {DType::kF32, p->b.data(), lora_a_.data(), lora_b_.data(), s.n, out, r}));
    const float scale = am->scale;
    float* yr = y + s.row * out;
    for (int64_t i = 0; i < s.n * out; ++i) yr[i] += scale * lora_b_[static_cast<size_t>(i)];
  }
  return absl::OkStatus();
}

absl::Status PagedRunner::Forward(absl::Span<const StepItem> items, float* logits) {
  const LlamaConfig& c = model_.config();
  const LlamaWeights& w = model_.weights();
  const ExecContext& ex = exec_;
  const int64_t C = c.n_embd, H = c.n_head, Hkv = c.n_head_kv, D = c.head_dim, F = c.n_ff;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), bt = pool_.block_tokens();
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));

  // Rows of each item, block tables grown to cover the new positions.
  std::vector<SeqKv*> kvs;
  std::vector<int64_t> row0;
  std::vector<Segment> segs;      // all T rows
  std::vector<Segment> out_segs;  // the R logits rows
  std::vector<int64_t> out_rows;
  int64_t t = 0;
  for (const StepItem& it : items) {
    auto f = seqs_.find(it.seq);
    if (f == seqs_.end()) return absl::InternalError("forward: unknown sequence");
    SeqKv& kv = f->second;
    const int64_t n = static_cast<int64_t>(it.tokens.size());
    if (t + n > options_.max_step_tokens || kv.past + n > options_.n_ctx) {
      return absl::InternalError("forward: step or sequence too long");
    }
    while (static_cast<int64_t>(kv.blocks.size()) * bt < kv.past + n) {
      const int32_t b = pool_.Allocate();
      if (b < 0) return absl::ResourceExhaustedError("forward: KV pool exhausted");
      kv.blocks.push_back(b);
      if (kv.reserved > 0) {
        --kv.reserved;
        --reserved_total_;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      tokens_[static_cast<size_t>(t + i)] = it.tokens[static_cast<size_t>(i)];
      pos_[static_cast<size_t>(t + i)] = static_cast<int32_t>(kv.past + i);
    }
    kvs.push_back(&kv);
    row0.push_back(t);
    segs.push_back({t, n, it.adapter});
    if (it.want_logits) {
      out_segs.push_back({static_cast<int64_t>(out_rows.size()), 1, it.adapter});
      out_rows.push_back(t + n - 1);
    }
    t += n;
  }
  const int64_t R = static_cast<int64_t>(out_rows.size());

  // x [T][C] = embedding rows.
  ANVIL_RETURN_IF_ERROR(GetRows(ex, {w.token_embd.type, w.token_embd.data, tokens_.data(),
                                     x_.data(), t, w.token_embd.rows, C}));
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    const bool last = l == c.n_layer - 1;
    ANVIL_RETURN_IF_ERROR(RmsNorm(ex, {x_.data(), lw.attn_norm, h_.data(), t, C, c.rms_eps}));
    // q [T][H*D], k/v [T][Hkv*D].
    ANVIL_RETURN_IF_ERROR(MatMulSameInput(
        ex, h_.data(), t, {{&lw.wq, q_.data()}, {&lw.wk, k_.data()}, {&lw.wv, v_.data()}}));
    ANVIL_RETURN_IF_ERROR(ApplyLora(segs, l, LoraModule::kQ, h_.data(), C, q_.data(), qd));
    ANVIL_RETURN_IF_ERROR(ApplyLora(segs, l, LoraModule::kK, h_.data(), C, k_.data(), kvd));
    ANVIL_RETURN_IF_ERROR(ApplyLora(segs, l, LoraModule::kV, h_.data(), C, v_.data(), kvd));
    ANVIL_RETURN_IF_ERROR(
        Rope(ex, {q_.data(), pos_.data(), t, H, D, c.n_rot, c.rope_freq_base, c.rope_neox}));
    ANVIL_RETURN_IF_ERROR(
        Rope(ex, {k_.data(), pos_.data(), t, Hkv, D, c.n_rot, c.rope_freq_base, c.rope_neox}));
    // Attention per sequence over its own keys (at the last layer only where logits are due).
    // With at least as many sequences as threads, whole sequences are dealt to the threads (one
    // pool wake-up per layer instead of one per sequence); otherwise each sequence's heads are
    // spread over the pool. The kernel's results do not depend on its thread count.
    // Each sequence's new K/V rows go into its blocks just before its attention reads them (on
    // the same thread, so the blocks' lines are fetched once).
    std::vector<size_t> att;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!last || items[i].want_logits) {
        att.push_back(i);
      } else {
        StoreKv(*kvs[i], l, row0[i], static_cast<int64_t>(items[i].tokens.size()));
      }
    }
    const int nt = threads_->num_threads();
    auto attend = [&](size_t i, int thread, const ExecContext& e) -> absl::Status {
      const SeqKv& kv = *kvs[i];
      const int64_t n = static_cast<int64_t>(items[i].tokens.size());
      StoreKv(kv, l, row0[i], n);
      // The attention reads the sequence's blocks in place.
      AttentionArgs args{q_.data() + row0[i] * qd, nullptr, nullptr,
                         attn_.data() + row0[i] * qd, n, kv.past, H, Hkv, D, scale};
      const auto ti = static_cast<size_t>(thread);
      if (half_) {
        BlockTable(kv, l, kv.past + n, &kblocks16_[ti], &vblocks16_[ti]);
        args.k_blocks_f16 = kblocks16_[ti].data();
        args.v_blocks_f16 = vblocks16_[ti].data();
      } else {
        BlockTable(kv, l, kv.past + n, &kblocks_[ti], &vblocks_[ti]);
        args.k_blocks = kblocks_[ti].data();
        args.v_blocks = vblocks_[ti].data();
      }
      args.block_rows = bt;
      args.blocks_transposed = transposed_;
      return Attention(e, args);
    };
    if (static_cast<int64_t>(att.size()) >= nt && nt > 1) {
      std::vector<absl::Status> st(att.size());
      threads_->ParallelFor(static_cast<int64_t>(att.size()), 1,
                            [&](int64_t b, int64_t e, int thread) {
                              const ExecContext serial{Backend::kCpu, nullptr, nullptr};
                              for (int64_t j = b; j < e; ++j) {
                                st[static_cast<size_t>(j)] =
                                    attend(att[static_cast<size_t>(j)], thread, serial);
                              }
                            });
      for (const absl::Status& s : st) ANVIL_RETURN_IF_ERROR(s);
    } else {
      for (size_t i : att) ANVIL_RETURN_IF_ERROR(attend(i, 0, ex));
    }
    int64_t rows = t;
    absl::Span<const Segment> cur = segs;
    if (last) {
      // Only the logits rows go on: compact attn and the residual to R rows.
      for (int64_t r = 0; r < R; ++r) {
        const int64_t src = out_rows[static_cast<size_t>(r)];
        std::memmove(attn_.data() + r * qd, attn_.data() + src * qd, sizeof(float) * qd);
        std::memmove(x_.data() + r * C, x_.data() + src * C, sizeof(float) * C);
      }
      rows = R;
      cur = out_segs;
      if (R == 0) break;
    }
    ANVIL_RETURN_IF_ERROR(MatMulRows(lw.wo, attn_.data(), proj_.data(), rows));
    ANVIL_RETURN_IF_ERROR(ApplyLora(cur, l, LoraModule::kO, attn_.data(), qd, proj_.data(), C));
    ANVIL_RETURN_IF_ERROR(AddInPlace(ex, x_.data(), proj_.data(), rows * C));
    ANVIL_RETURN_IF_ERROR(RmsNorm(ex, {x_.data(), lw.ffn_norm, h_.data(), rows, C, c.rms_eps}));
    ANVIL_RETURN_IF_ERROR(MatMulSameInput(ex, h_.data(), rows,
                                          {{&lw.w_gate, gate_.data()}, {&lw.w_up, up_.data()}}));
    ANVIL_RETURN_IF_ERROR(ApplyLora(cur, l, LoraModule::kGate, h_.data(), C, gate_.data(), F));
    ANVIL_RETURN_IF_ERROR(ApplyLora(cur, l, LoraModule::kUp, h_.data(), C, up_.data(), F));
    ANVIL_RETURN_IF_ERROR(SwiGlu(ex, {gate_.data(), up_.data(), gate_.data(), rows * F}));
    ANVIL_RETURN_IF_ERROR(MatMulRows(lw.w_down, gate_.data(), proj_.data(), rows));
    ANVIL_RETURN_IF_ERROR(ApplyLora(cur, l, LoraModule::kDown, gate_.data(), F, proj_.data(), C));
    ANVIL_RETURN_IF_ERROR(AddInPlace(ex, x_.data(), proj_.data(), rows * C));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    kvs[i]->past += static_cast<int64_t>(items[i].tokens.size());
    RegisterPromptBlocks(*kvs[i]);
  }
  if (R == 0) return absl::OkStatus();
  // logits [R][V] = output(norm(x)).
  ANVIL_RETURN_IF_ERROR(RmsNorm(ex, {x_.data(), w.output_norm, h_.data(), R, C, c.rms_eps}));
  return MatMulRows(w.output, h_.data(), logits, R);
}

}  // namespace anvil::server
