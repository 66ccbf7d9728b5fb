// Gradient clipping, AdamW over TrainParams and the learning-rate schedule.
#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "kernels/adamw.h"
#include "kernels/core/status_macros.h"
#include "kernels/core/thread_pool.h"

namespace anvil::train {

namespace {

// Gradient elements per chunk of the parallel passes.
constexpr int64_t kChunk = int64_t{1} << 16;

struct Chunk {
  float* data;
  int64_t n;
};

std::vector<Chunk> GradChunks(std::vector<TrainParam>* params) {
  std::vector<Chunk> chunks;
  for (TrainParam& p : *params) {
    const auto n = static_cast<int64_t>(p.grad.size());
    for (int64_t i = 0; i < n; i += kChunk) chunks.push_back({p.grad.data() + i, std::min(kChunk, n - i)});
  }
  return chunks;
}

// Sum of squares of one chunk: 16 float lanes (vectorizable without reassociation flags),
// added up in double.
double SumSquares(const float* x, int64_t n) {
  float lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int j = 0; j < 16; ++j) lanes[j] += x[i + j] * x[i + j];
  }
  double s = 0.0;
  for (float l : lanes) s += l;
  for (; i < n; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

}  // namespace

double AdamWOptimizer::ClipGradNorm(const ExecContext& ex, std::vector<TrainParam>* params,
                                    double max_norm) const {
  const std::vector<Chunk> chunks = GradChunks(params);
  std::vector<double> partial(chunks.size());
  ParallelFor(ex.pool, static_cast<int64_t>(chunks.size()), 1, [&](int64_t b, int64_t e, int) {
    for (int64_t c = b; c < e; ++c) partial[static_cast<size_t>(c)] = SumSquares(chunks[static_cast<size_t>(c)].data, chunks[static_cast<size_t>(c)].n);
  });
  double total_sq = 0.0;
  for (double s : partial) total_sq += s;
  const double norm = std::sqrt(total_sq);
  if (max_norm > 0.0) {
    const float coef = static_cast<float>(max_norm) / (static_cast<float>(norm) + 1e-6f);
    if (coef < 1.0f) {
      ParallelFor(ex.pool, static_cast<int64_t>(chunks.size()), 1, [&](int64_t b, int64_t e, int) {
        for (int64_t c = b; c < e; ++c) {
          float* g = chunks[static_cast<size_t>(c)].data;
          for (int64_t i = 0; i < chunks[static_cast<size_t>(c)].n; ++i) g[i] *= coef;
        }
      });
    }
  }
  return norm;
}

absl::Status AdamWOptimizer::Step(const ExecContext& ex, std::vector<TrainParam>* params,
                                  double lr) {
  if (m_.empty()) {
    for (const TrainParam& p : *params) {
      m_.emplace_back(p.value.size(), 0.0f);
      v_.emplace_back(p.value.size(), 0.0f);
    }
  }
  if (m_.size() != params->size()) {
    return absl::FailedPreconditionError(absl::StrCat("adamw: optimizer state has ", m_.size(),
                                                      " tensors but there are ", params->size(),
                                                      " parameters"));
  }
  ++step_;
  for (size_t i = 0; i < params->size(); ++i) {
    TrainParam& p = (*params)[i];
    if (m_[i].size() != p.value.size() || v_[i].size() != p.value.size()) {
      return absl::FailedPreconditionError(
          absl::StrCat("adamw: optimizer state of ", p.name, " has the wrong size"));
    }
    AdamWArgs a;
    a.param = p.value.data();
    a.grad = p.grad.data();
    a.m = m_[i].data();
    a.v = v_[i].data();
    a.n = p.numel();
    a.step = step_;
    a.lr = lr;
    a.beta1 = config_.beta1;
    a.beta2 = config_.beta2;
    a.eps = config_.eps;
    a.weight_decay = p.decay ? config_.weight_decay : 0.0;
    ANVIL_RETURN_IF_ERROR(AdamW(ex, a));
  }
  return absl::OkStatus();
}

double LearningRate(double base_lr, const ScheduleConfig& s, int64_t step, int64_t total) {
  const int64_t k = std::max<int64_t>(step - 1, 0);  // HF's current_step
  if (k < s.warmup_steps) {
    return base_lr * static_cast<double>(k) / static_cast<double>(std::max<int64_t>(1, s.warmup_steps));
  }
  if (s.decay == LrDecay::kConstant) return base_lr;
  const double progress = static_cast<double>(k - s.warmup_steps) /
                          static_cast<double>(std::max<int64_t>(1, total - s.warmup_steps));
  double f = 0.0;
  if (s.decay == LrDecay::kCosine) {
    f = std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
  } else {
    f = std::max(0.0, 1.0 - progress);
  }
  return base_lr * (s.min_lr_ratio + (1.0 - s.min_lr_ratio) * f);
}

}  // namespace anvil::train
