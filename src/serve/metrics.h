// Server metrics in the Prometheus text exposition format (thread-safe).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "duet/serve_engine.h"

namespace duet::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // Appends name_bucket{le=...}, name_sum and name_count lines.
  void render(const std::string& name, const std::string& help, std::string* out) const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative); last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

struct QueueGauges {
  int queued = 0;
  int running = 0;
  int jobs_stored = 0;
  bool ready = true;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& route, int status);
  void observe_queue_wait(double s) { queue_wait_.observe(s); }
  void observe_run_time(double s) { run_time_.observe(s); }
  void observe_batch(int images, int requests);
  void count_rejected() { rejected_.fetch_add(1); }
  void count_cancelled() { cancelled_.fetch_add(1); }
  void count_timeout() { timeouts_.fetch_add(1); }
  void count_outcome(const std::string& state);
  void count_images(int n) { images_.fetch_add(n); }
  void count_slow_close() { slow_closed_.fetch_add(1); }

  std::string render(const QueueGauges& q, const EngineStats& e);

 private:
  std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> outcomes_;
  Histogram queue_wait_, run_time_, batch_images_, batch_requests_;
  std::atomic<uint64_t> rejected_{0}, cancelled_{0}, timeouts_{0}, images_{0}, slow_closed_{0};
  // denoiser evaluations/s over the interval since the previous scrape
  double last_scrape_s_ = -1;
  int64_t last_evals_ = 0;
  double evals_per_s_ = 0;
};

}  // namespace duet::serve
