// Jobs, the bounded job queue, the engine thread that runs batches of compatible jobs and the
// housekeeping thread (timeouts, expiry). HTTP handlers only talk to JobManager.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "duet/serve.h"
#include "serve/metrics.h"

namespace duet::serve {

using Clock = std::chrono::steady_clock;

enum class JobState { kQueued, kRunning, kSucceeded, kFailed, kCancelled };
const char* job_state_name(JobState s);
inline bool is_final(JobState s) { return s >= JobState::kSucceeded; }

struct Job {
  std::string id;
  ImageRequest request;
  bool sync = false;           // a blocking /v1/images/generations request (not listed, not kept)
  std::string api = "openai";  // the front end that made it: "openai", "sdapi" or "mcp"

  Clock::time_point created, started, finished, deadline;
  int64_t created_unix = 0;
  std::atomic<bool> cancel{false};

  // Everything below is guarded by mu; every change bumps version and notifies cv (progress
  // listeners: SSE). done_cv is notified only when the job reaches a final state, so a blocking
  // request's handler thread is not woken on every step (each wake-up on a 2-core machine
  // preempts one of the engine's OpenMP threads mid-step).
  mutable std::mutex mu;
  std::condition_variable cv, done_cv;
  JobState state = JobState::kQueued;
  int step = 0;
  uint64_t version = 0;
  Status error;            // why it failed / was cancelled
  bool timed_out = false;  // failed because the request timeout passed
  std::shared_ptr<const ImageOutput> output;
  std::vector<std::string> pngs;  // encoded lazily, per image
  double queue_s = 0, run_s = 0;
};

class JobManager {
 public:
  enum class Submit { kOk, kQueueFull, kDraining };

  JobManager(ImageEngine& engine, const ServeOptions& options, Metrics& metrics);
  ~JobManager();

  std::shared_ptr<Job> make_job(ImageRequest request, bool sync);
  Submit submit(const std::shared_ptr<Job>& job);
  // Queues all of `jobs` at once (one batch can take them all: `duet worker` hands over what it
  // read from the broker together); ignores max_queue.
  Submit submit_all(const std::vector<std::shared_ptr<Job>>& jobs);
  // The job, or null; *gone = it existed and expired.
  std::shared_ptr<Job> find(const std::string& id, bool* gone);
  // Requests cancellation; false when the job had already finished.
  bool cancel(const std::shared_ptr<Job>& job, const std::string& reason);
  void forget(const std::string& id);  // drop a sync job once answered
  int retry_after_s() const;
  QueueGauges gauges() const;
  // The running jobs, then the queued ones in queue order (for /sdapi/v1/progress, interrupt).
  std::vector<std::shared_ptr<Job>> active() const;
  bool draining() const { return draining_.load(); }
  // See Server::shutdown.
  int drain(std::chrono::milliseconds deadline);

 private:
  class RunningBatch;
  void engine_loop();
  int take_compatible(const std::string& key, int images, bool from_front_only,
                      std::vector<std::shared_ptr<Job>>* out);  // under mu_
  void housekeeping_loop();
  void finish(const std::shared_ptr<Job>& job, JobState state, Status error,
              std::shared_ptr<const ImageOutput> output);
  std::string new_id();

  ImageEngine& engine_;
  ServeOptions opts_;
  Metrics& metrics_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, idle_cv_, house_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> running_;
  std::map<std::string, std::shared_ptr<Job>> table_;
  std::map<std::string, Clock::time_point> tombstones_;  // expired id -> when to forget it
  uint64_t id_counter_ = 0;
  uint64_t id_salt_ = 0;
  double mean_run_s_ = 1.0;  // moving average of a job's run time (Retry-After estimate)
  bool stop_ = false;
  std::atomic<bool> draining_{false};
  bool drained_ = false;
  int cancelled_at_drain_ = 0;
  std::thread engine_thread_, house_thread_;
};

}  // namespace duet::serve
