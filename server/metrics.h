// The server's Prometheus metrics: request counts by API, route and status, tokens in and out,
// time-to-first-token and inter-token latency histograms, and the engine's gauges (queue depth,
// running sequences, batch sizes, KV cache use) read from EngineStats when /metrics is scraped.
// Thread-safe; the transports record, metrics.cc renders the text exposition format 0.0.4.
#ifndef ANVIL_SERVER_METRICS_H_
#define ANVIL_SERVER_METRICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/engine.h"

namespace anvil::server {

// A cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // Appends the _bucket/_sum/_count lines of metric `name`.
  void Render(const std::string& name, std::string* out) const;
  int64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<int64_t> counts_;  // per bound, not cumulative; the last is +Inf
  double sum_ = 0;
  int64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // api: "http" or "grpc"; route: "/v1/completions" or "Generate"; code: "200" or "OK".
  void CountRequest(const std::string& api, const std::string& route, const std::string& code);
  void CountTokens(int64_t prompt, int64_t completion);
  void ObserveTimeToFirstToken(absl::Duration d);
  void ObserveInterTokenLatency(absl::Duration d);

  // The exposition text; `stats` is null while the model is loading. `state` is "loading",
  // "serving" or "draining".
  std::string Render(const EngineStats* stats, const std::string& state) const;

 private:
  mutable absl::Mutex mu_;
  std::map<std::tuple<std::string, std::string, std::string>, int64_t> requests_
      ABSL_GUARDED_BY(mu_);
  int64_t prompt_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t completion_tokens_ ABSL_GUARDED_BY(mu_) = 0;
  Histogram ttft_ ABSL_GUARDED_BY(mu_);
  Histogram itl_ ABSL_GUARDED_BY(mu_);
};

// Times one request's tokens as a transport consumes them: the first token against the time the
// request was submitted, every later one against the previous.
class TokenTimer {
 public:
  TokenTimer(Metrics* metrics, absl::Time submitted) : metrics_(metrics), last_(submitted) {}
  void Token(absl::Time t);

 private:
  Metrics* metrics_;
  absl::Time last_;
  bool first_ = true;
};

}  // namespace anvil::server

#endif  // ANVIL_SERVER_METRICS_H_
