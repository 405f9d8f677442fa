#include "serve/metrics.h"

#include <chrono>
#include <cstdio>

namespace duet::serve {
namespace {

std::string num(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void head(std::string* out, const std::string& name, const char* type, const std::string& help) {
  *out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void scalar(std::string* out, const std::string& name, const char* type, const std::string& help,
            double v) {
  head(out, name, type, help);
  *out += name + " " + num(v) + "\n";
}

}  // namespace

void Histogram::observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(const std::string& name, const std::string& help, std::string* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  head(out, name, "histogram", help);
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    *out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  *out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  *out += name + "_sum " + num(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : queue_wait_({0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}),
      run_time_({0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}),
      batch_images_({1, 2, 4, 8, 16, 32, 64}),
      batch_requests_({1, 2, 4, 8, 16, 32, 64}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[{route, status}];
}

void Metrics::observe_batch(int images, int requests) {
  batch_images_.observe(images);
  batch_requests_.observe(requests);
}

void Metrics::count_outcome(const std::string& state) {
  std::lock_guard<std::mutex> lock(mu_);
  ++outcomes_[state];
}

std::string Metrics::render(const QueueGauges& q, const EngineStats& e) {
  std::string out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    head(&out, "duet_http_requests_total", "counter", "HTTP requests by route and status.");
    for (const auto& [k, v] : requests_)
      out += "duet_http_requests_total{route=\"" + k.first + "\",status=\"" +
             std::to_string(k.second) + "\"} " + std::to_string(v) + "\n";
    head(&out, "duet_jobs_finished_total", "counter", "Finished jobs by final state.");
    for (const auto& [k, v] : outcomes_)
      out += "duet_jobs_finished_total{state=\"" + k + "\"} " + std::to_string(v) + "\n";
    const double t = now_s();
    if (last_scrape_s_ >= 0 && t - last_scrape_s_ > 1e-3)
      evals_per_s_ = (e.denoiser_evaluations - last_evals_) / (t - last_scrape_s_);
    last_scrape_s_ = t;
    last_evals_ = e.denoiser_evaluations;
  }
  scalar(&out, "duet_queue_depth", "gauge", "Jobs waiting in the queue.", q.queued);
  scalar(&out, "duet_jobs_running", "gauge", "Jobs in the running batch.", q.running);
  scalar(&out, "duet_jobs_stored", "gauge", "Jobs held in the job table.", q.jobs_stored);
  scalar(&out, "duet_ready", "gauge", "1 when accepting work.", q.ready ? 1 : 0);
  queue_wait_.render("duet_queue_wait_seconds", "Time from submission to the job's start.", &out);
  run_time_.render("duet_run_seconds", "Time from the job's start to its completion.", &out);
  batch_images_.render("duet_batch_images", "Images running in the batch when jobs start in it.",
                       &out);
  batch_requests_.render("duet_batch_requests", "Jobs running in the batch when jobs start in it.",
                         &out);
  scalar(&out, "duet_denoiser_evaluations_total", "counter", "Batched denoiser calls.",
         static_cast<double>(e.denoiser_evaluations));
  scalar(&out, "duet_denoiser_rows_total", "counter", "Rows over all denoiser calls.",
         static_cast<double>(e.denoiser_rows));
  scalar(&out, "duet_backbone_blocks_run_total", "counter",
         "Backbone blocks finished requests needed (with their caches).",
         static_cast<double>(e.backbone_blocks_run));
  scalar(&out, "duet_backbone_blocks_uncached_total", "counter",
         "Backbone blocks the same requests would have needed without caching.",
         static_cast<double>(e.backbone_blocks_total));
  scalar(&out, "duet_cache_reused_calls_total", "counter",
         "Request calls that reused a cached backbone span.",
         static_cast<double>(e.cache_reused_calls));
  scalar(&out, "duet_denoiser_evaluations_per_second", "gauge",
         "Denoiser calls per second since the previous scrape.", evals_per_s_);
  scalar(&out, "duet_prompt_cache_hits_total", "counter", "Prompt cache hits.",
         static_cast<double>(e.prompt_cache_hits));
  scalar(&out, "duet_prompt_cache_misses_total", "counter", "Prompt cache misses.",
         static_cast<double>(e.prompt_cache_misses));
  scalar(&out, "duet_prompt_cache_bytes", "gauge", "Bytes held by the prompt cache.",
         static_cast<double>(e.prompt_cache_bytes));
  scalar(&out, "duet_prompt_cache_entries", "gauge", "Entries in the prompt cache.",
         static_cast<double>(e.prompt_cache_entries));
  scalar(&out, "duet_prompt_cache_evictions_total", "counter",
         "Prompt cache entries evicted (least recently used first).",
         static_cast<double>(e.prompt_cache_evictions));
  scalar(&out, "duet_memory_limit_bytes", "gauge", "Model workspace cap (0 = none).",
         static_cast<double>(e.memory_limit_bytes));
  scalar(&out, "duet_memory_refused_total", "counter",
         "Requests refused up front because they would exceed the memory cap.",
         static_cast<double>(e.memory_refused));
  scalar(&out, "duet_rejected_total", "counter", "Requests rejected with 429 (queue full).",
         static_cast<double>(rejected_.load()));
  scalar(&out, "duet_cancelled_total", "counter", "Jobs cancelled (DELETE, disconnect, drain).",
         static_cast<double>(cancelled_.load()));
  scalar(&out, "duet_timeouts_total", "counter", "Jobs that ran past their timeout.",
         static_cast<double>(timeouts_.load()));
  scalar(&out, "duet_slow_connections_closed_total", "counter",
         "Connections closed for missing the request deadline (slow or idle clients).",
         static_cast<double>(slow_closed_.load()));
  scalar(&out, "duet_images_total", "counter", "Images generated.",
         static_cast<double>(images_.load()));
  return out;
}

}  // namespace duet::serve
