#include "server/metrics.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"

namespace anvil::server {
namespace {

// Latency buckets from 5 ms to 30 s (TTFT includes queueing, so the tail is long).
std::vector<double> LatencyBounds() {
  return {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30};
}

std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// Label values escape backslash, quote and newline.
std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

void Header(const std::string& name, const std::string& type, const std::string& help,
            std::string* out) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

void Gauge(const std::string& name, const std::string& help, double v, std::string* out) {
  Header(name, "gauge", help, out);
  absl::StrAppend(out, name, " ", Num(v), "\n");
}

void Counter(const std::string& name, const std::string& help, double v, std::string* out) {
  Header(name, "counter", help, out);
  absl::StrAppend(out, name, " ", Num(v), "\n");
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[i];
  sum_ += value;
  ++count_;
}

void Histogram::Render(const std::string& name, std::string* out) const {
  int64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(out, name, "_bucket{le=\"", Num(bounds_[i]), "\"} ", cumulative, "\n");
  }
  absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", count_, "\n");
  absl::StrAppend(out, name, "_sum ", Num(sum_), "\n", name, "_count ", count_, "\n");
}

Metrics::Metrics() : ttft_(LatencyBounds()), itl_(LatencyBounds()) {}

void Metrics::CountRequest(const std::string& api, const std::string& route,
                           const std::string& code) {
  absl::MutexLock lock(&mu_);
  ++requests_[{api, route, code}];
}

void Metrics::CountTokens(int64_t prompt, int64_t completion) {
  absl::MutexLock lock(&mu_);
  prompt_tokens_ += prompt;
  completion_tokens_ += completion;
}

void Metrics::ObserveTimeToFirstToken(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  ttft_.Observe(absl::ToDoubleSeconds(d));
}

void Metrics::ObserveInterTokenLatency(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  itl_.Observe(absl::ToDoubleSeconds(d));
}

std::string Metrics::Render(const EngineStats* stats, const std::string& state) const {
  std::string out;
  {
    absl::MutexLock lock(&mu_);
    Header("anvil_requests_total", "counter", "Requests answered, by API, route and status.",
           &out);
    for (const auto& [key, n] : requests_) {
      absl::StrAppend(&out, "anvil_requests_total{api=\"", Escape(std::get<0>(key)),
                      "\",route=\"", Escape(std::get<1>(key)), "\",code=\"",
                      Escape(std::get<2>(key)), "\"} ", n, "\n");
    }
    Counter("anvil_prompt_tokens_total", "Prompt tokens of finished requests.", prompt_tokens_,
            &out);
    Counter("anvil_generation_tokens_total", "Tokens generated for finished requests.",
            completion_tokens_, &out);
    Header("anvil_time_to_first_token_seconds", "histogram",
           "From admission to the first generated token.", &out);
    ttft_.Render("anvil_time_to_first_token_seconds", &out);
    Header("anvil_inter_token_latency_seconds", "histogram",
           "Between consecutive tokens of one request.", &out);
    itl_.Render("anvil_inter_token_latency_seconds", &out);
  }
  Header("anvil_server_state", "gauge", "1 for the current state.", &out);
  for (const char* s : {"loading", "serving", "draining"}) {
    absl::StrAppend(&out, "anvil_server_state{state=\"", s, "\"} ", state == s ? 1 : 0, "\n");
  }
  if (stats == nullptr) return out;
  Gauge("anvil_queue_depth", "Admitted requests waiting for a slot.", stats->queued, &out);
  Gauge("anvil_running_sequences", "Sequences in the running batch.", stats->running, &out);
  Gauge("anvil_kv_cache_blocks_used", "KV cache blocks in use.", stats->kv_blocks_used, &out);
  Gauge("anvil_kv_cache_blocks_total", "KV cache blocks in the pool.", stats->kv_blocks_total,
        &out);
  Gauge("anvil_kv_cache_usage_ratio", "Fraction of the KV cache pool in use.",
        stats->kv_blocks_total > 0
            ? static_cast<double>(stats->kv_blocks_used) / stats->kv_blocks_total
            : 0.0,
        &out);
  Counter("anvil_engine_steps_total", "Batched forward steps.", stats->steps, &out);
  Counter("anvil_engine_step_tokens_total", "Tokens processed by all steps.",
          stats->step_tokens_total, &out);
  Counter("anvil_prefix_cache_hit_tokens_total", "Prompt positions served from the prefix cache.",
          stats->prefix_cache_hit_tokens, &out);
  // Batch size: the engine keeps steps per exact size; Prometheus wants cumulative buckets.
  Header("anvil_batch_size", "histogram", "Sequences per forward step.", &out);
  int64_t cumulative = 0;
  double sum = 0;
  for (size_t i = 0; i < stats->batch_size_counts.size(); ++i) {
    cumulative += stats->batch_size_counts[i];
    sum += static_cast<double>(stats->batch_size_counts[i]) * static_cast<double>(i + 1);
    absl::StrAppend(&out, "anvil_batch_size_bucket{le=\"", i + 1, "\"} ", cumulative, "\n");
  }
  absl::StrAppend(&out, "anvil_batch_size_bucket{le=\"+Inf\"} ", cumulative, "\n",
                  "anvil_batch_size_sum ", Num(sum), "\nanvil_batch_size_count ", cumulative,
                  "\n");
  return out;
}

void TokenTimer::Token(absl::Time t) {
  if (first_) {
    metrics_->ObserveTimeToFirstToken(t - last_);
    first_ = false;
  } else {
    metrics_->ObserveInterTokenLatency(t - last_);
  }
  last_ = t;
}

}  // namespace anvil::server
