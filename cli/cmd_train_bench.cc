// anvil train-bench MODEL: tokens/s of one training step (LoRA, QLoRA or full fine-tuning) on
// seeded token batches, the GEMM peak measured in the same run and the model FLOP utilization.
// The anvil side of scripts/bench/vs-pytorch.sh (the PyTorch side is torch_train_bench.py). The
// training math lives in model/trainable_llama.h and train/; this file only drives and times it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "kernels/core/status_macros.h"
#include "kernels/gemm.h"
#include "model/trainable_llama.h"
#include "train/losses.h"
#include "train/optimizer.h"

namespace anvil::cli {
namespace {

using Clock = std::chrono::steady_clock;

// Token ids of sequence b, position t: HashCounter(kTokenSeed, b * T + t) mod V. The PyTorch
// side (scripts/bench/torch_train_bench.py) draws the same ids, so both see the same batch.
constexpr uint64_t kTokenSeed = 1234;
constexpr double kLearningRate = 1e-4;
constexpr double kMaxGradNorm = 1.0;

struct BenchConfig {
  TrainMethod method = TrainMethod::kLora;
  int64_t seq = 256, batch = 4, threads = 2, steps = 5, warmup = 1, rank = 8;
  double alpha = 16.0;
  bool checkpointing = false;
};

absl::StatusOr<BenchConfig> ParseBenchConfig(const Args& args) {
  BenchConfig c;
  const std::string m = args.Get("method");
  if (m == "lora") {
    c.method = TrainMethod::kLora;
  } else if (m == "full") {
    c.method = TrainMethod::kFull;
  } else if (m == "qlora") {
    c.method = TrainMethod::kQLora;
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("--method %s: must be lora, full or qlora", m));
  }
  ANVIL_ASSIGN_OR_RETURN(c.seq, args.GetInt("seq"));
  ANVIL_ASSIGN_OR_RETURN(c.batch, args.GetInt("batch"));
  ANVIL_ASSIGN_OR_RETURN(c.threads, args.GetInt("threads"));
  ANVIL_ASSIGN_OR_RETURN(c.steps, args.GetInt("steps"));
  ANVIL_ASSIGN_OR_RETURN(c.warmup, args.GetInt("warmup"));
  ANVIL_ASSIGN_OR_RETURN(c.rank, args.GetInt("rank"));
  ANVIL_ASSIGN_OR_RETURN(c.alpha, args.GetDouble("alpha"));
  c.checkpointing = args.GetBool("checkpointing");
  if (c.seq < 2 || c.batch < 1 || c.threads < 1 || c.threads > 256 || c.steps < 1 ||
      c.warmup < 0 || c.rank < 1 || !(c.alpha > 0)) {
    return absl::InvalidArgumentError(
        "need --seq >= 2, --batch >= 1, --threads in 1..256, --steps >= 1, --warmup >= 0, "
        "--rank >= 1, --alpha > 0");
  }
  return c;
}

// `batch` sequences of `seq` seeded ids; targets [N] = the next token, -1 at each last position.
SequenceBatch MakeBatch(const BenchConfig& c, int64_t n_vocab, std::vector<int32_t>* targets) {
  SequenceBatch batch;
  targets->clear();
  for (int64_t b = 0; b < c.batch; ++b) {
    std::vector<int32_t> ids(static_cast<size_t>(c.seq));
    for (int64_t t = 0; t < c.seq; ++t) {
      ids[static_cast<size_t>(t)] = static_cast<int32_t>(
          HashCounter(kTokenSeed, static_cast<uint64_t>(b * c.seq + t)) %
          static_cast<uint64_t>(n_vocab));
    }
    for (int64_t t = 0; t < c.seq; ++t) {
      targets->push_back(t + 1 < c.seq ? ids[static_cast<size_t>(t + 1)] : -1);
    }
    batch.Add(ids);
  }
  return batch;
}

// Model FLOPs of one step, counted analytically (multiply-add = 2 FLOPs; norms, RoPE, SwiGLU,
// softmax and the cross-entropy are not counted):
//   matmul forward  2 N P, P = every matrix of every layer plus the V x C head (tied or not);
//   attention fwd   QK^T and PV over the causal half including the diagonal, T (T + 1) / 2
//                   query-key pairs: 2 * 2 D H * T (T + 1) / 2 per layer and sequence;
//   backward        attention 2x its forward (dQ, dK, dV, dP) in every method; matrices 2x their
//                   forward (dx and dW) for full fine-tuning, 1x (dx only: frozen weights get no
//                   gradient) for LoRA; the embedding's gradient is a scatter and counts 0;
//   LoRA adapters   2 N r (in + out) forward and twice that backward, per adapted matrix.
// Gradient checkpointing's recomputed forward is not counted: model FLOPs, not hardware FLOPs.
struct StepFlops {
  double matmul_fwd = 0, attention_fwd = 0, adapters = 0, total = 0;
};

StepFlops CountStepFlops(const LlamaConfig& m, const BenchConfig& c) {
  const double n = static_cast<double>(c.batch * c.seq), t = static_cast<double>(c.seq);
  const double C = m.n_embd, F = m.n_ff, QD = m.q_dim(), KD = m.kv_dim();
  const double layer_params = C * QD + 2 * C * KD + QD * C + 3 * C * F;
  const double matrix_params = m.n_layer * layer_params + static_cast<double>(m.n_vocab) * C;
  StepFlops f;
  f.matmul_fwd = 2 * n * matrix_params;
  f.attention_fwd = static_cast<double>(m.n_layer * c.batch) * 2.0 * 2.0 *
                    static_cast<double>(m.head_dim * m.n_head) * t * (t + 1) / 2;
  if (c.method == TrainMethod::kFull) {
    f.total = 3 * f.matmul_fwd + 3 * f.attention_fwd;
  } else {
    // in + out of the seven modules: q (C, QD), k and v (C, KD), o (QD, C), gate and up (C, F),
    // down (F, C).
    const double in_out = (C + QD) * 2 + (C + KD) * 2 + 3 * (C + F);
    f.adapters = 3 * 2 * n * static_cast<double>(c.rank) * in_out * m.n_layer;
    f.total = 2 * f.matmul_fwd + 3 * f.attention_fwd + f.adapters;
  }
  return f;
}

// One optimizer step; returns the batch's mean cross-entropy before the update.
absl::StatusOr<double> TrainStep(TrainableLlama& model, train::AdamWOptimizer& opt,
                                 const SequenceBatch& batch, const std::vector<int32_t>& targets) {
  const ExecContext& ex = model.exec();
  const int64_t n = batch.n_tokens(), v = model.config().n_vocab;
  model.ZeroGrad();
  ANVIL_RETURN_IF_ERROR(model.Forward(batch));
  std::vector<float> ce, lse;
  ANVIL_RETURN_IF_ERROR(
      train::RowCrossEntropy(ex, model.logits(), targets.data(), n, v, &ce, &lse));
  const train::CeSums sums = train::SumCounted(ce, targets.data(), n);
  if (sums.count == 0) return absl::InternalError("train-bench: batch has no counted target");
  std::vector<float> dloss(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    dloss[static_cast<size_t>(i)] =
        targets[static_cast<size_t>(i)] >= 0 ? 1.0f / static_cast<float>(sums.count) : 0.0f;
  }
  ANVIL_RETURN_IF_ERROR(
      train::CrossEntropyGrad(ex, model.logits(), lse.data(), targets.data(), dloss.data(), n, v));
  ANVIL_RETURN_IF_ERROR(model.Backward());
  opt.ClipGradNorm(model.exec(), &model.params(), kMaxGradNorm);
  ANVIL_RETURN_IF_ERROR(opt.Step(ex, &model.params(), kLearningRate));
  return sums.loss_sum / static_cast<double>(sums.count);
}

struct GemmPeak {
  double gflops = 0;
  std::string detail;  // "fwd 1024x1536x576 263.1, ..." (best GFLOP/s per shape)
};

// The best GFLOP/s of Gemm (whatever GemmEngine names) over the step's main shapes: the forward of
// gate/up (x W^T, [N] x F x C) and of down ([N] x C x F), and a weight gradient (g^T x,
// F x C x [N]). Best of `calls` after one untimed call, on the training model's own pool.
absl::StatusOr<GemmPeak> MeasureGemmPeak(const ExecContext& ex, int64_t n, int64_t c, int64_t f,
                                         int calls) {
  struct Shape {
    const char* name;
    bool trans_a, trans_b;
    int64_t m, n, k;
  };
  const Shape shapes[] = {{"fwd", false, true, n, f, c},
                          {"fwd", false, true, n, c, f},
                          {"dW", true, false, f, c, n}};
  GemmPeak peak;
  for (const Shape& s : shapes) {
    // A holds m * k and B n * k floats in either orientation; the values do not matter.
    std::vector<float> a(static_cast<size_t>(s.m * s.k), 0.5f);
    std::vector<float> b(static_cast<size_t>(s.n * s.k), 0.25f);
    std::vector<float> out(static_cast<size_t>(s.m * s.n));
    GemmArgs g;
    g.trans_a = s.trans_a, g.trans_b = s.trans_b;
    g.m = s.m, g.n = s.n, g.k = s.k;
    g.a = a.data(), g.lda = s.trans_a ? s.m : s.k;
    g.b = b.data(), g.ldb = s.trans_b ? s.k : s.n;
    g.c = out.data(), g.ldc = s.n;
    double best = 0;
    for (int i = 0; i <= calls; ++i) {
      const auto t0 = Clock::now();
      ANVIL_RETURN_IF_ERROR(Gemm(ex, g));
      const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
      if (i > 0) best = std::max(best, 2.0 * s.m * s.n * s.k / sec / 1e9);
    }
    peak.gflops = std::max(peak.gflops, best);
    absl::StrAppendFormat(&peak.detail, "%s%s %dx%dx%d %.1f", peak.detail.empty() ? "" : ", ",
                          s.name, s.m, s.n, s.k, best);
  }
  return peak;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 == 1 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

absl::Status RunTrainBench(const Args& args) {
  ANVIL_ASSIGN_OR_RETURN(BenchConfig bc, ParseBenchConfig(args));
  ANVIL_ASSIGN_OR_RETURN(auto base, LoadModel(args.positional(0)));
  const LlamaConfig& mc = base->config();
  if (bc.seq > mc.n_ctx_train) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--seq %d is longer than the model's training context (%d)", bc.seq, mc.n_ctx_train));
  }
  TrainableOptions to;
  to.method = bc.method;
  to.lora.rank = bc.rank;
  to.lora.alpha = static_cast<float>(bc.alpha);
  to.lora.dropout = 0.0f;
  to.lora.targets.assign(std::begin(kAllLoraModules), std::end(kAllLoraModules));
  to.gradient_checkpointing = bc.checkpointing;
  to.threads = static_cast<int>(bc.threads);
  ANVIL_ASSIGN_OR_RETURN(auto model, TrainableLlama::Create(*base, to));
  int64_t trainable = 0;
  for (const TrainParam& p : model->params()) trainable += p.numel();

  std::vector<int32_t> targets;
  const SequenceBatch batch = MakeBatch(bc, mc.n_vocab, &targets);
  train::AdamWConfig ac;
  ac.lr = kLearningRate;
  ac.weight_decay = 0.0;
  train::AdamWOptimizer opt(ac);
  double loss_first = 0, loss_last = 0;
  std::vector<double> seconds;
  for (int64_t i = 0; i < bc.warmup + bc.steps; ++i) {
    const auto t0 = Clock::now();
    ANVIL_ASSIGN_OR_RETURN(loss_last, TrainStep(*model, opt, batch, targets));
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    if (i == 0) loss_first = loss_last;
    if (i >= bc.warmup) seconds.push_back(sec);
  }
  ANVIL_ASSIGN_OR_RETURN(GemmPeak peak,
                         MeasureGemmPeak(model->exec(), batch.n_tokens(), mc.n_embd, mc.n_ff, 8));
  const std::string engine = GemmEngine(model->exec());

  const double step_s = Median(seconds);
  const double tokens_per_s = static_cast<double>(batch.n_tokens()) / step_s;
  const StepFlops flops = CountStepFlops(mc, bc);
  const double achieved_gflops = flops.total / step_s / 1e9;
  const double mfu = achieved_gflops / peak.gflops;
  const char* method = TrainMethodName(bc.method);
  std::fprintf(stderr,
               "anvil train-bench: %s, %lld x %lld tokens, %lld threads%s: median step %.3f s over "
               "%lld steps, %.1f tokens/s; loss %.4f -> %.4f; %.1f GFLOP/step (matmul fwd %.1f, "
               "attention fwd %.1f causal half, adapters %.2f), %.1f GFLOP/s achieved; GEMM peak "
               "(%s) %.1f GFLOP/s (%s); MFU %.3f; %lld trainable params\n",
               method, static_cast<long long>(bc.batch), static_cast<long long>(bc.seq),
               static_cast<long long>(bc.threads), bc.checkpointing ? ", checkpointing" : "",
               step_s, static_cast<long long>(bc.steps), tokens_per_s, loss_first, loss_last,
               flops.total / 1e9, flops.matmul_fwd / 1e9, flops.attention_fwd / 1e9,
               flops.adapters / 1e9, achieved_gflops, engine.c_str(), peak.gflops,
               peak.detail.c_str(), mfu,
               static_cast<long long>(trainable));
  std::printf(
      "{\"engine\":\"anvil\",\"method\":\"%s\",\"seq\":%lld,\"batch\":%lld,\"threads\":%lld,"
      "\"steps\":%lld,\"step_s_median\":%.4f,\"tokens_per_s\":%.2f,\"loss_first\":%.6f,"
      "\"gflop_per_step\":%.2f,\"gemm\":\"%s\",\"gemm_peak_gflops\":%.1f,\"mfu\":%.4f,"
      "\"checkpointing\":%s,\"trainable_params\":%lld}\n",
      method, static_cast<long long>(bc.seq), static_cast<long long>(bc.batch),
      static_cast<long long>(bc.threads), static_cast<long long>(bc.steps), step_s, tokens_per_s,
      loss_first, flops.total / 1e9, engine.c_str(), peak.gflops, mfu,
      bc.checkpointing ? "true" : "false",
      static_cast<long long>(trainable));
  std::fflush(stdout);
  return absl::OkStatus();
}

}  // namespace

Command TrainBenchCommand() {
  Command c;
  c.spec = {"train-bench",
            "Time training steps (LoRA/QLoRA/full) on seeded tokens; tokens/s, GEMM peak, MFU "
            "as one JSON line.",
            {"MODEL"},
            {{"method", "NAME", "lora", "lora, full or qlora"},
             {"seq", "N", "256", "tokens per sequence"},
             {"batch", "N", "4", "sequences per step (micro-batch)"},
             {"threads", "N", "2", "CPU threads"},
             {"steps", "N", "5", "timed steps (the median is reported)"},
             {"warmup", "N", "1", "untimed steps first"},
             {"rank", "N", "8", "LoRA rank (all seven modules are adapted)"},
             {"alpha", "X", "16", "LoRA alpha"},
             {"checkpointing", "", "", "gradient checkpointing"}}};
  c.run = RunTrainBench;
  return c;
}

}  // namespace anvil::cli
