// What the ranks of a data-parallel RunFinetune exchange through the Collective: each step's
// gradients and loss sums (one allreduce of the gradients in bounded chunks, one of the stats),
// and at the start a check that every rank resumed from the same step of the same data.
// The step loop that decides what to sum is in trainer.cc.
#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/core/status_macros.h"
#include "train/finetune_run.h"

namespace anvil::train {
namespace {

// Floats per gradient allreduce: bounds the staging copy (64 MiB) for full fine-tuning of a big
// model, while LoRA's gradients go in one call.
constexpr size_t kChunkFloats = size_t{1} << 24;

absl::Status Annotate(const absl::Status& s, int rank, int world, const std::string& what) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("rank ", rank, " of ", world, ": ", what, ": ", s.message()));
}

}  // namespace

std::vector<bool> FinetuneRun::MyMicroBatches(const std::vector<int64_t>& costs) const {
  const int w = world();
  std::vector<bool> mine(costs.size(), w == 1);
  if (w == 1) return mine;
  std::vector<size_t> order(costs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<int64_t> load(static_cast<size_t>(w), 0);
  for (size_t i : order) {
    const size_t r = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    load[r] += costs[i];
    mine[i] = static_cast<int>(r) == rank();
  }
  return mine;
}

absl::Status FinetuneRun::SumOverRanks(bool gradients, double* stats, size_t n) {
  if (world() == 1) return absl::OkStatus();
  Collective* c = options_.collective;
  if (gradients) {
    // The gradients of all params, end to end, are summed chunk by chunk; every rank has the
    // same params in the same order, so the chunks line up.
    grad_buf_.resize(kChunkFloats);
    std::vector<std::pair<float*, size_t>> pieces;  // where each run of the chunk came from
    size_t fill = 0;
    auto flush = [&]() -> absl::Status {
      if (fill == 0) return absl::OkStatus();
      ANVIL_RETURN_IF_ERROR(c->AllreduceSum(grad_buf_.data(), fill));
      size_t at = 0;
      for (const auto& [dst, len] : pieces) {
        std::memcpy(dst, grad_buf_.data() + at, len * sizeof(float));
        at += len;
      }
      pieces.clear();
      fill = 0;
      return absl::OkStatus();
    };
    for (TrainParam& p : model_->params()) {
      for (size_t off = 0; off < p.grad.size();) {
        const size_t take = std::min(kChunkFloats - fill, p.grad.size() - off);
        std::memcpy(grad_buf_.data() + fill, p.grad.data() + off, take * sizeof(float));
        pieces.emplace_back(p.grad.data() + off, take);
        fill += take;
        off += take;
        if (fill == kChunkFloats) ANVIL_RETURN_IF_ERROR(Annotate(flush(), rank(), world(), "gradient allreduce"));
      }
    }
    ANVIL_RETURN_IF_ERROR(Annotate(flush(), rank(), world(), "gradient allreduce"));
  }
  if (n > 0) ANVIL_RETURN_IF_ERROR(Annotate(c->AllreduceSum(stats, n), rank(), world(), "stats allreduce"));
  return absl::OkStatus();
}

absl::Status FinetuneRun::AgreeOnStart(int64_t resumed_step) {
  if (world() == 1) return absl::OkStatus();
  // Each rank fills its own row; the sum gives every rank every row. Doubles are exact here.
  enum { kStep, kTotal, kExamples, kParams, kCols };
  const int w = world(), r = rank();
  int64_t numel = 0;
  for (const TrainParam& p : model_->params()) numel += p.numel();
  std::vector<double> rows(static_cast<size_t>(w) * kCols, 0.0);
  double* mine = rows.data() + static_cast<size_t>(r) * kCols;
  mine[kStep] = static_cast<double>(resumed_step);
  mine[kTotal] = static_cast<double>(total_steps_);
  mine[kExamples] = static_cast<double>(order_->num_examples());
  mine[kParams] = static_cast<double>(numel);
  ANVIL_RETURN_IF_ERROR(Annotate(options_.collective->AllreduceSum(rows.data(), rows.size()), r, w,
                                 "start-up agreement"));
  auto describe = [&](int i) {
    const double* x = rows.data() + static_cast<size_t>(i) * kCols;
    return absl::StrCat("rank ", i, " resumed from step ", static_cast<int64_t>(x[kStep]), " with ",
                        static_cast<int64_t>(x[kExamples]), " examples, ",
                        static_cast<int64_t>(x[kTotal]), " steps and ",
                        static_cast<int64_t>(x[kParams]), " trainable values");
  };
  for (int i = 1; i < w; ++i) {
    if (!std::equal(rows.begin() + i * kCols, rows.begin() + (i + 1) * kCols, rows.begin())) {
      return absl::FailedPreconditionError(absl::StrCat(
          describe(0), ", but ", describe(i), ": every rank must see the same recipe, data and "
          "checkpoint.dir (", CheckpointDir(), ") — a shared directory"));
    }
  }
  return absl::OkStatus();
}

}  // namespace anvil::train
