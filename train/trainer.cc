// RunFinetune: set-up (model, data through the chat template, trainable model, optimizer), the
// step loop (micro-batches with gradient accumulation; SFT/LM cross-entropy normalized by the
// step's trained tokens, or DPO against the frozen base), evaluation and exports. Checkpoints,
// resume and the metrics file are in trainer_state.cc.
#include "train/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/core/status_macros.h"
#include "nlohmann/json.hpp"
#include "train/dataset.h"
#include "train/export.h"
#include "train/finetune_run.h"
#include "train/losses.h"
#include "train/render.h"

namespace anvil::train {
namespace {

std::string Duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, t / 60 % 60);
  if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
  return absl::StrFormat("%ds", t);
}

// Sequences and targets of `ids` laid end to end.
void Collect(const std::vector<SequenceExample*>& seqs, SequenceBatch* b,
             std::vector<int32_t>* targets) {
  for (const SequenceExample* e : seqs) {
    b->Add(e->tokens);
    targets->insert(targets->end(), e->targets.begin(), e->targets.end());
  }
}

// The token rows that have a target (>= 0) and those targets, in order: SFT computes logits
// for these rows only (ForwardOptions::logit_rows); the others add nothing to loss or gradient.
void TargetRows(const std::vector<int32_t>& targets, std::vector<int64_t>* rows,
                std::vector<int32_t>* row_targets) {
  rows->clear();
  row_targets->clear();
  for (size_t i = 0; i < targets.size(); ++i) {
    if (targets[i] < 0) continue;
    rows->push_back(static_cast<int64_t>(i));
    row_targets->push_back(targets[i]);
  }
}

}  // namespace

std::string StepMetrics::ToJson() const {
  nlohmann::ordered_json j;
  j["step"] = step;
  j["total_steps"] = total_steps;
  j["loss"] = loss;
  j["lr"] = lr;
  j["grad_norm"] = grad_norm;
  j["tokens"] = tokens;
  j["tokens_per_s"] = tokens_per_s;
  j["elapsed_s"] = elapsed_s;
  if (allreduce_s > 0) j["allreduce_s"] = allreduce_s;
  if (dpo) {
    j["rewards/chosen"] = rewards_chosen;
    j["rewards/rejected"] = rewards_rejected;
    j["rewards/accuracies"] = reward_accuracy;
    j["rewards/margins"] = reward_margin;
    j["logps/chosen"] = logps_chosen;
    j["logps/rejected"] = logps_rejected;
  }
  return j.dump();
}

absl::Status FinetuneRun::Load() {
  ANVIL_ASSIGN_OR_RETURN(base_, LlamaModel::Load(recipe_.model));
  if (!base_->chat_template().has_value()) {
    return absl::FailedPreconditionError(absl::StrCat(
        recipe_.model, ": no usable chat template (", base_->chat_template_error(),
        "); training renders every record with the model's template"));
  }
  ANVIL_ASSIGN_OR_RETURN(Dataset data, ReadJsonlFile(recipe_.data.train));
  ChatRenderer renderer(base_->tokenizer(), *base_->chat_template());
  RenderOptions ro;
  ro.mask = recipe_.loss == LossKind::kLm ? LossMask::kAllTokens : LossMask::kCompletion;
  ro.max_length = recipe_.data.max_length;
  ro.bpe_dropout = recipe_.data.bpe_dropout;
  ro.dropout_seed = recipe_.data.seed;
  RenderStats stats;
  const bool dpo = recipe_.loss == LossKind::kDpo;
  if (dpo != (data.kind == DatasetKind::kPreference)) {
    return absl::InvalidArgumentError(absl::StrCat(
        recipe_.source, ": data.train: loss ", LossKindName(recipe_.loss), " needs ",
        dpo ? "preference records (prompt, chosen, rejected)" : "SFT records (messages or prompt/completion)",
        " but ", data.name, " holds ", DatasetKindName(data.kind), " records"));
  }
  int64_t n = 0;
  if (dpo) {
    ANVIL_ASSIGN_OR_RETURN(pref_, RenderPreferenceDataset(data, renderer, ro, &stats));
    n = static_cast<int64_t>(pref_.size());
  } else {
    ANVIL_ASSIGN_OR_RETURN(sft_, RenderSftDataset(data, renderer, ro, &stats));
    if (recipe_.data.packing) {
      ANVIL_ASSIGN_OR_RETURN(sft_, PackExamples(sft_, recipe_.data.max_length,
                                                PaddingToken(base_->tokenizer())));
    }
    n = static_cast<int64_t>(sft_.size());
  }
  if (options_.progress && leader()) {
    std::fprintf(stderr, "anvil finetune: %s: %s\n", data.name.c_str(), stats.Summary().c_str());
  }
  if (n == 0) {
    return absl::InvalidArgumentError(absl::StrCat(data.name, ": no example left to train on"));
  }
  TrainableOptions to;
  to.method = recipe_.method;
  to.lora = recipe_.lora;
  to.gradient_checkpointing = recipe_.train.gradient_checkpointing;
  to.seed = recipe_.train.seed;
  to.threads = static_cast<int>(recipe_.train.threads);
  ANVIL_ASSIGN_OR_RETURN(model_, TrainableLlama::Create(*base_, to));
  if (dpo && recipe_.method == TrainMethod::kFull) {
    // The reference is the frozen base: a second, adapter-less view that keeps the base in its
    // file type (the same numbers as the dequantized base, without a second fp32 copy).
    TrainableOptions ro2 = to;
    ro2.method = ::anvil::TrainMethod::kQLora;
    ro2.lora = LoraConfig{};
    ANVIL_ASSIGN_OR_RETURN(reference_, TrainableLlama::Create(*base_, ro2));
  }
  total_steps_ = TotalSteps(recipe_, n);
  order_ = std::make_unique<DataOrder>(n, recipe_.data.seed, recipe_.data.shuffle);
  AdamWConfig ac;
  ac.lr = recipe_.optim.lr;
  ac.beta1 = recipe_.optim.beta1;
  ac.beta2 = recipe_.optim.beta2;
  ac.eps = recipe_.optim.eps;
  ac.weight_decay = recipe_.optim.weight_decay;
  optimizer_ = std::make_unique<AdamWOptimizer>(ac);
  return absl::OkStatus();
}

absl::Status FinetuneRun::SftMicroBatch(const std::vector<int64_t>& ids, int64_t step,
                                        int64_t micro, double denom, double* loss_sum,
                                        int64_t* tokens) {
  std::vector<SequenceExample*> seqs;
  for (int64_t id : ids) seqs.push_back(&sft_[static_cast<size_t>(id)]);
  SequenceBatch b;
  std::vector<int32_t> targets;
  Collect(seqs, &b, &targets);
  std::vector<int64_t> rows;
  std::vector<int32_t> row_targets;
  TargetRows(targets, &rows, &row_targets);
  ForwardOptions fo;
  fo.dropout_key = HashCounter(recipe_.train.seed, static_cast<uint64_t>(step) * 4096 + micro);
  fo.logit_rows = &rows;
  ANVIL_RETURN_IF_ERROR(model_->Forward(b, fo));
  const int64_t r = static_cast<int64_t>(rows.size()), v = model_->config().n_vocab;
  ANVIL_RETURN_IF_ERROR(
      RowCrossEntropy(model_->exec(), model_->logits(), row_targets.data(), r, v, &ce_, &lse_));
  *loss_sum += SumCounted(ce_, row_targets.data(), r).loss_sum;
  *tokens += b.n_tokens();
  dloss_.assign(static_cast<size_t>(r), static_cast<float>(1.0 / denom));
  ANVIL_RETURN_IF_ERROR(CrossEntropyGrad(model_->exec(), model_->logits(), lse_.data(),
                                         row_targets.data(), dloss_.data(), r, v));
  return model_->Backward();
}

absl::Status FinetuneRun::DpoMicroBatch(const std::vector<int64_t>& ids, int64_t step,
                                        int64_t micro, int64_t denom, StepMetrics* m,
                                        int64_t* tokens) {
  std::vector<SequenceExample*> seqs;
  for (int64_t id : ids) seqs.push_back(&pref_[static_cast<size_t>(id)].chosen);
  for (int64_t id : ids) seqs.push_back(&pref_[static_cast<size_t>(id)].rejected);
  SequenceBatch b;
  std::vector<int32_t> targets;
  Collect(seqs, &b, &targets);
  const auto pairs = static_cast<int64_t>(ids.size());
  const int64_t n = b.n_tokens(), v = model_->config().n_vocab;
  auto logps = [&](TrainableLlama* m) -> absl::StatusOr<std::vector<double>> {
    ANVIL_RETURN_IF_ERROR(RowCrossEntropy(m->exec(), m->logits(), targets.data(), n, v, &ce_, &lse_));
    return SequenceLogps(ce_, b.starts);
  };
  TrainableLlama* ref = reference_ != nullptr ? reference_.get() : model_.get();
  ANVIL_RETURN_IF_ERROR(ref->Forward(b, {.with_adapters = false, .record = false}));
  ANVIL_ASSIGN_OR_RETURN(const std::vector<double> r, logps(ref));
  ForwardOptions fo;
  fo.dropout_key = HashCounter(recipe_.train.seed, static_cast<uint64_t>(step) * 4096 + micro);
  ANVIL_RETURN_IF_ERROR(model_->Forward(b, fo));
  ANVIL_ASSIGN_OR_RETURN(const std::vector<double> p, logps(model_.get()));
  auto half = [pairs](const std::vector<double>& x, bool first) {
    return first ? std::vector<double>(x.begin(), x.begin() + pairs)
                 : std::vector<double>(x.begin() + pairs, x.end());
  };
  DpoConfig dc;
  dc.beta = recipe_.dpo.beta;
  ANVIL_ASSIGN_OR_RETURN(DpoStats s, DpoLoss(half(p, true), half(p, false), half(r, true),
                                             half(r, false), dc, denom));
  const auto w = static_cast<double>(pairs);
  m->loss += s.loss * w;
  m->rewards_chosen += s.rewards_chosen * w;
  m->rewards_rejected += s.rewards_rejected * w;
  m->reward_accuracy += s.reward_accuracy * w;
  m->reward_margin += s.reward_margin * w;
  m->logps_chosen += s.logps_chosen * w;
  m->logps_rejected += s.logps_rejected * w;
  *tokens += n;
  dloss_.assign(static_cast<size_t>(n), 0.0f);
  for (int64_t q = 0; q < b.size(); ++q) {
    const double d = q < pairs ? s.d_logp_chosen[static_cast<size_t>(q)]
                               : s.d_logp_rejected[static_cast<size_t>(q - pairs)];
    for (int64_t i = b.starts[static_cast<size_t>(q)]; i < b.starts[static_cast<size_t>(q) + 1]; ++i) {
      dloss_[static_cast<size_t>(i)] = static_cast<float>(-d);  // logp = -sum(ce)
    }
  }
  ANVIL_RETURN_IF_ERROR(CrossEntropyGrad(model_->exec(), model_->logits(), lse_.data(),
                                         targets.data(), dloss_.data(), n, v));
  return model_->Backward();
}

absl::Status FinetuneRun::TrainStep(int64_t step, StepMetrics* m, bool* stopped) {
  model_->ZeroGrad();
  const int64_t mb = recipe_.train.micro_batch, accum = recipe_.train.grad_accum;
  const std::vector<int64_t> ids = order_->NextBatch(mb * accum);
  // A rank that votes to stop skips its micro-batches but still joins the step's allreduce, so
  // that every rank learns of the vote at the same step and none waits for it.
  const bool stop = options_.should_stop && options_.should_stop();
  int64_t tokens = 0;
  const bool dpo = recipe_.loss == LossKind::kDpo;
  // Summed over the ranks with the gradients: loss sum, tokens, stop votes, then DPO's sums.
  enum { kLoss, kTokens, kStop, kChosen, kRejected, kAccuracy, kMargin, kLogpC, kLogpR, kStats };
  double stats[kStats] = {};
  double* dpo_sums[] = {&m->rewards_chosen, &m->rewards_rejected, &m->reward_accuracy,
                        &m->reward_margin, &m->logps_chosen, &m->logps_rejected};
  // Denominators are the global ones: every rank sees the whole step's ids.
  double denom = 1.0;
  if (!dpo) {
    int64_t count = 0;
    for (int64_t id : ids) {
      for (int32_t t : sft_[static_cast<size_t>(id)].targets) count += t >= 0 ? 1 : 0;
    }
    denom = static_cast<double>(std::max<int64_t>(count, 1));
    std::vector<int64_t> costs(static_cast<size_t>(accum), 0);
    for (int64_t i = 0; i < accum; ++i) {
      for (int64_t j = i * mb; j < (i + 1) * mb; ++j) {
        costs[static_cast<size_t>(i)] +=
            static_cast<int64_t>(sft_[static_cast<size_t>(ids[static_cast<size_t>(j)])].tokens.size());
      }
    }
    const std::vector<bool> mine = MyMicroBatches(costs);
    for (int64_t i = 0; i < accum; ++i) {
      if (stop || !mine[static_cast<size_t>(i)]) continue;
      const std::vector<int64_t> sub(ids.begin() + i * mb, ids.begin() + (i + 1) * mb);
      ANVIL_RETURN_IF_ERROR(SftMicroBatch(sub, step, i, denom, &stats[kLoss], &tokens));
    }
  } else {
    m->dpo = true;
    denom = static_cast<double>(ids.size());
    std::vector<int64_t> costs(static_cast<size_t>(accum), 0);
    for (int64_t i = 0; i < accum; ++i) {
      for (int64_t j = i * mb; j < (i + 1) * mb; ++j) {
        const PreferenceExample& p = pref_[static_cast<size_t>(ids[static_cast<size_t>(j)])];
        costs[static_cast<size_t>(i)] +=
            static_cast<int64_t>(p.chosen.tokens.size() + p.rejected.tokens.size());
      }
    }
    const std::vector<bool> mine = MyMicroBatches(costs);
    for (int64_t i = 0; i < accum; ++i) {
      if (stop || !mine[static_cast<size_t>(i)]) continue;
      const std::vector<int64_t> sub(ids.begin() + i * mb, ids.begin() + (i + 1) * mb);
      ANVIL_RETURN_IF_ERROR(DpoMicroBatch(sub, step, i, static_cast<int64_t>(ids.size()), m, &tokens));
    }
    stats[kLoss] = m->loss;
    for (int k = 0; k < 6; ++k) stats[kChosen + k] = *dpo_sums[k];
  }
  stats[kTokens] = static_cast<double>(tokens);
  stats[kStop] = stop ? 1.0 : 0.0;
  const auto reduce_start = std::chrono::steady_clock::now();
  ANVIL_RETURN_IF_ERROR(SumOverRanks(/*gradients=*/true, stats, kStats));
  m->allreduce_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - reduce_start).count();
  if (stats[kStop] > 0) {
    *stopped = true;
    return absl::OkStatus();
  }
  const double inv = 1.0 / denom;
  m->loss = dpo ? stats[kLoss] * inv : stats[kLoss] / denom;
  tokens = static_cast<int64_t>(stats[kTokens]);
  if (dpo) {
    for (int k = 0; k < 6; ++k) *dpo_sums[k] = stats[kChosen + k] * inv;
  }
  m->grad_norm = optimizer_->ClipGradNorm(model_->exec(), &model_->params(), recipe_.optim.grad_clip);
  ScheduleConfig sc;
  sc.warmup_steps = recipe_.schedule.warmup_steps;
  sc.decay = recipe_.schedule.decay;
  sc.min_lr_ratio = recipe_.schedule.min_lr_ratio;
  m->lr = LearningRate(recipe_.optim.lr, sc, step, total_steps_);
  ANVIL_RETURN_IF_ERROR(optimizer_->Step(model_->exec(), &model_->params(), m->lr));
  m->step = step;
  m->total_steps = total_steps_;
  m->tokens = tokens;
  return absl::OkStatus();
}

absl::StatusOr<double> FinetuneRun::EvalLoss(double* reward_accuracy) {
  ANVIL_ASSIGN_OR_RETURN(Dataset data, ReadJsonlFile(recipe_.data.eval));
  const bool dpo = recipe_.loss == LossKind::kDpo;
  if (dpo != (data.kind == DatasetKind::kPreference)) {
    return absl::InvalidArgumentError(absl::StrCat(
        recipe_.source, ": data.eval: ", data.name, " holds ", DatasetKindName(data.kind),
        " records, but loss ", LossKindName(recipe_.loss), " needs the kind data.train has"));
  }
  ChatRenderer renderer(base_->tokenizer(), *base_->chat_template());
  RenderOptions ro;
  ro.mask = recipe_.loss == LossKind::kLm ? LossMask::kAllTokens : LossMask::kCompletion;
  ro.max_length = recipe_.data.max_length;
  RenderStats stats;
  const int64_t mb = recipe_.train.micro_batch, v = model_->config().n_vocab;
  double sum = 0.0, accuracy = 0.0;
  int64_t count = 0;
  if (dpo) {
    ANVIL_ASSIGN_OR_RETURN(std::vector<PreferenceExample> pairs,
                           RenderPreferenceDataset(data, renderer, ro, &stats));
    TrainableLlama* ref = reference_ != nullptr ? reference_.get() : model_.get();
    for (size_t i = 0; i < pairs.size(); i += static_cast<size_t>(mb)) {
      if (!Mine(static_cast<int64_t>(i) / mb)) continue;
      const size_t end = std::min(pairs.size(), i + static_cast<size_t>(mb));
      std::vector<SequenceExample*> seqs;
      for (size_t j = i; j < end; ++j) seqs.push_back(&pairs[j].chosen);
      for (size_t j = i; j < end; ++j) seqs.push_back(&pairs[j].rejected);
      SequenceBatch b;
      std::vector<int32_t> targets;
      Collect(seqs, &b, &targets);
      std::vector<double> lp[2];
      TrainableLlama* models[2] = {ref, model_.get()};
      for (int k = 0; k < 2; ++k) {
        ANVIL_RETURN_IF_ERROR(models[k]->Forward(b, {.with_adapters = k == 1, .record = false}));
        ANVIL_RETURN_IF_ERROR(RowCrossEntropy(models[k]->exec(), models[k]->logits(),
                                              targets.data(), b.n_tokens(), v, &ce_, &lse_));
        lp[k] = SequenceLogps(ce_, b.starts);
      }
      const auto p = static_cast<int64_t>(end - i);
      auto half = [p](const std::vector<double>& x, bool first) {
        return first ? std::vector<double>(x.begin(), x.begin() + p)
                     : std::vector<double>(x.begin() + p, x.end());
      };
      DpoConfig dc;
      dc.beta = recipe_.dpo.beta;
      ANVIL_ASSIGN_OR_RETURN(DpoStats s, DpoLoss(half(lp[1], true), half(lp[1], false),
                                                 half(lp[0], true), half(lp[0], false), dc, p));
      sum += s.loss * static_cast<double>(p);
      accuracy += s.reward_accuracy * static_cast<double>(p);
      count += p;
    }
  } else {
    ANVIL_ASSIGN_OR_RETURN(std::vector<SequenceExample> ex, RenderSftDataset(data, renderer, ro, &stats));
    for (size_t i = 0; i < ex.size(); i += static_cast<size_t>(mb)) {
      if (!Mine(static_cast<int64_t>(i) / mb)) continue;
      std::vector<SequenceExample*> seqs;
      for (size_t j = i; j < std::min(ex.size(), i + static_cast<size_t>(mb)); ++j) seqs.push_back(&ex[j]);
      SequenceBatch b;
      std::vector<int32_t> targets;
      Collect(seqs, &b, &targets);
      std::vector<int64_t> rows;
      std::vector<int32_t> row_targets;
      TargetRows(targets, &rows, &row_targets);
      ANVIL_RETURN_IF_ERROR(model_->Forward(b, {.record = false, .logit_rows = &rows}));
      const auto r = static_cast<int64_t>(rows.size());
      ANVIL_RETURN_IF_ERROR(RowCrossEntropy(model_->exec(), model_->logits(), row_targets.data(),
                                            r, v, &ce_, &lse_));
      const CeSums s = SumCounted(ce_, row_targets.data(), r);
      sum += s.loss_sum;
      count += s.count;
    }
  }
  // The eval batches are split over the ranks like a step's micro-batches.
  double totals[3] = {sum, accuracy, static_cast<double>(count)};
  ANVIL_RETURN_IF_ERROR(SumOverRanks(/*gradients=*/false, totals, 3));
  if (totals[2] <= 0) return -1.0;
  if (dpo && reward_accuracy != nullptr) *reward_accuracy = totals[1] / totals[2];
  return totals[0] / totals[2];
}

absl::Status FinetuneRun::Export(RunResult* result) {
  const std::string& dir = recipe_.output.dir;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::FailedPreconditionError(absl::StrCat("output.dir: cannot create ", dir, ": ", ec.message()));
  const LlamaConfig& c = base_->config();
  const std::string base_name = std::filesystem::path(recipe_.model).filename().string();
  LoraAdapters adapters;
  absl::flat_hash_map<std::string, const std::vector<float>*> replaced;
  if (recipe_.method == TrainMethod::kFull) {
    for (const TrainParam& p : model_->params()) replaced[p.name] = &p.value;
  } else {
    adapters = model_->Adapters();
    for (AdapterFormat f : recipe_.output.adapter) {
      if (f == AdapterFormat::kPeft) {
        const std::string d = dir + "/adapter";
        ANVIL_RETURN_IF_ERROR(WritePeftAdapter(adapters, d, base_name, c.n_head, c.n_head_kv));
        result->outputs.push_back(d);
      } else {
        const std::string p = dir + "/adapter.gguf";
        ANVIL_RETURN_IF_ERROR(WriteLoraGguf(adapters, base_->file(), p));
        result->outputs.push_back(p);
      }
    }
  }
  if (recipe_.output.merged != MergedType::kNone) {
    const bool f16 = recipe_.output.merged == MergedType::kF16;
    const std::string p = dir + (f16 ? "/merged-f16.gguf" : "/merged-f32.gguf");
    ANVIL_RETURN_IF_ERROR(WriteMergedGguf(base_->file(),
                                          recipe_.method == TrainMethod::kFull ? nullptr : &adapters,
                                          replaced, f16 ? DType::kF16 : DType::kF32, p));
    result->outputs.push_back(p);
  }
  return absl::OkStatus();
}

void FinetuneRun::Progress(const StepMetrics& m, bool last) {
  if (!options_.progress || !leader()) return;
  const std::string line = absl::StrFormat(
      "step %d/%d | loss %.4f | lr %.2e | %.0f tok/s | elapsed %s | ETA %s", m.step,
      m.total_steps, m.loss, m.lr, m.tokens_per_s, Duration(m.elapsed_s), Duration(m.eta_s));
  if (options_.progress_tty) {
    std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), last ? "\n" : "");
  } else if (last || m.step % std::max<int64_t>(1, recipe_.log.every) == 0) {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

absl::StatusOr<RunResult> FinetuneRun::Run() {
  ANVIL_RETURN_IF_ERROR(Load());
  RunResult result;
  result.total_steps = total_steps_;
  ANVIL_ASSIGN_OR_RETURN(result.resumed_from_step, options_.resume ? Resume() : absl::StatusOr<int64_t>(0));
  ANVIL_RETURN_IF_ERROR(AgreeOnStart(result.resumed_from_step));
  if (leader()) ANVIL_RETURN_IF_ERROR(OpenMetrics(result.resumed_from_step));
  start_ = std::chrono::steady_clock::now();
  const int64_t every = recipe_.checkpoint.every;
  for (int64_t step = result.resumed_from_step + 1; step <= total_steps_; ++step) {
    StepMetrics m;
    bool stopped = false;
    ANVIL_RETURN_IF_ERROR(TrainStep(step, &m, &stopped));
    if (stopped) {
      if (options_.progress && options_.progress_tty && leader()) std::fprintf(stderr, "\n");
      return absl::CancelledError(absl::StrCat("training stopped before step ", step, " of ",
                                               total_steps_, " (asked to stop)"));
    }
    ++steps_run_;
    tokens_run_ += m.tokens;
    m.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    m.tokens_per_s = static_cast<double>(tokens_run_) / std::max(m.elapsed_s, 1e-9);
    m.eta_s = m.elapsed_s / static_cast<double>(steps_run_) * static_cast<double>(total_steps_ - step);
    result.losses.push_back(m.loss);
    result.last_step = step;
    if (leader()) ANVIL_RETURN_IF_ERROR(AppendMetrics(m));
    Progress(m, step == total_steps_);
    if (options_.on_step) options_.on_step(m);
    if (leader() && ((every > 0 && step % every == 0) || step == total_steps_)) {
      ANVIL_RETURN_IF_ERROR(SaveCheckpoint(step));
    }
    if (options_.stop_after_step > 0 && step >= options_.stop_after_step) {
      if (options_.progress && options_.progress_tty && leader()) std::fprintf(stderr, "\n");
      return result;
    }
  }
  if (!recipe_.data.eval.empty()) {
    ANVIL_ASSIGN_OR_RETURN(result.eval_loss, EvalLoss(&result.eval_reward_accuracy));
  }
  if (leader()) ANVIL_RETURN_IF_ERROR(Export(&result));
  return result;
}

absl::StatusOr<RunResult> RunFinetune(const Recipe& recipe, const RunOptions& options) {
  FinetuneRun run(recipe, options);
  return run.Run();
}

}  // namespace anvil::train
