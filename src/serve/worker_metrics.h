// `duet worker --metrics-port`: the worker's counters and its local JobManager / engine metrics
// in the Prometheus text format, on a small HTTP endpoint of its own (/metrics, /healthz).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "duet/serve_engine.h"
#include "duet/status.h"
#include "serve/jobs.h"
#include "serve/metrics.h"

namespace duet::serve {

struct WorkerCounters {
  Metrics local;  // the local JobManager's (queue wait, batch sizes, outcomes)
  std::atomic<uint64_t> claimed{0}, reclaimed{0}, fenced{0}, failed_attempts{0}, batches{0};
  std::atomic<int> broker_up{1};
  std::string render(JobManager& jobs, const ImageEngine& engine);
};

class WorkerMetricsServer {
 public:
  static Result<std::unique_ptr<WorkerMetricsServer>> start(const std::string& host, int port,
                                                            WorkerCounters& counters,
                                                            JobManager& jobs,
                                                            const ImageEngine& engine);
  ~WorkerMetricsServer();
  int port() const;
  struct Impl;

 private:
  explicit WorkerMetricsServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace duet::serve
