#include "serve/jobs.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

namespace duet::serve {
namespace {

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

JobManager::JobManager(ImageEngine& engine, const ServeOptions& options, Metrics& metrics)
    : engine_(engine), opts_(options), metrics_(metrics) {
  std::random_device rd;
  id_salt_ = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  engine_thread_ = std::thread([this] { engine_loop(); });
  house_thread_ = std::thread([this] { housekeeping_loop(); });
}

JobManager::~JobManager() { drain(std::chrono::milliseconds(0)); }

std::string JobManager::new_id() {
  std::lock_guard<std::mutex> lock(mu_);
  // Unguessable: a per-process random salt mixed with a counter (splitmix64).
  uint64_t x = id_salt_ + 0x9e3779b97f4a7c15ull * ++id_counter_;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  x ^= x >> 31;
  char buf[40];
  std::snprintf(buf, sizeof buf, "job_%016llx%06llx", static_cast<unsigned long long>(x),
                static_cast<unsigned long long>(id_counter_ & 0xffffff));
  return buf;
}

std::shared_ptr<Job> JobManager::make_job(ImageRequest request, bool sync) {
  auto job = std::make_shared<Job>();
  job->id = new_id();
  job->request = std::move(request);
  job->sync = sync;
  job->created = Clock::now();
  job->created_unix = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  job->deadline =
      job->created + std::chrono::microseconds(static_cast<int64_t>(opts_.timeout_s * 1e6));
  return job;
}

JobManager::Submit JobManager::submit(const std::shared_ptr<Job>& job) {
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_.load() || stop_) return Submit::kDraining;
  if (static_cast<int>(queue_.size()) >= opts_.max_queue) {
    metrics_.count_rejected();
    return Submit::kQueueFull;
  }
  queue_.push_back(job);
  table_[job->id] = job;
  work_cv_.notify_one();
  return Submit::kOk;
}

JobManager::Submit JobManager::submit_all(const std::vector<std::shared_ptr<Job>>& jobs) {
  std::lock_guard<std::mutex> lock(mu_);
  if (draining_.load() || stop_) return Submit::kDraining;
  for (const auto& job : jobs) {
    queue_.push_back(job);
    table_[job->id] = job;
  }
  work_cv_.notify_one();
  return Submit::kOk;
}

std::shared_ptr<Job> JobManager::find(const std::string& id, bool* gone) {
  std::lock_guard<std::mutex> lock(mu_);
  *gone = false;
  auto it = table_.find(id);
  if (it != table_.end() && !it->second->sync) return it->second;
  *gone = tombstones_.count(id) > 0;
  return nullptr;
}

void JobManager::forget(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  table_.erase(id);
}

bool JobManager::cancel(const std::shared_ptr<Job>& job, const std::string& reason) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) {
      queue_.erase(it);
      idle_cv_.notify_all();
      lock.unlock();
      job->cancel.store(true);
      finish(job, JobState::kCancelled, cancelled(reason), nullptr);
      return true;
    }
  }
  std::lock_guard<std::mutex> jl(job->mu);
  if (is_final(job->state)) return false;
  if (!job->cancel.exchange(true)) job->error = cancelled(reason);
  return true;
}

int JobManager::retry_after_s() const {
  std::lock_guard<std::mutex> lock(mu_);
  const double batches =
      std::ceil(static_cast<double>(queue_.size() + 1) / std::max(1, opts_.max_batch));
  return std::clamp(static_cast<int>(std::ceil(batches * mean_run_s_)), 1, 3600);
}

QueueGauges JobManager::gauges() const {
  std::lock_guard<std::mutex> lock(mu_);
  QueueGauges g;
  g.queued = static_cast<int>(queue_.size());
  g.running = static_cast<int>(running_.size());
  g.jobs_stored = static_cast<int>(table_.size());
  g.ready = !draining_.load();
  return g;
}

std::vector<std::shared_ptr<Job>> JobManager::active() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<Job>> out(running_.begin(), running_.end());
  out.insert(out.end(), queue_.begin(), queue_.end());
  return out;
}

void JobManager::finish(const std::shared_ptr<Job>& job, JobState state, Status error,
                        std::shared_ptr<const ImageOutput> output) {
  const auto now = Clock::now();
  {
    std::lock_guard<std::mutex> jl(job->mu);
    if (is_final(job->state)) return;
    if (state != JobState::kSucceeded && job->timed_out) {
      state = JobState::kFailed;
      error = Status(StatusCode::kResourceExhausted,
                     "request timed out after " + std::to_string(opts_.timeout_s) + " s");
    } else if (state == JobState::kCancelled && !job->error.is_ok()) {
      error = job->error;  // the reason given to cancel()
    }
    const bool was_running = job->state == JobState::kRunning;
    job->state = state;
    job->error = std::move(error);
    job->output = std::move(output);
    job->finished = now;
    if (was_running) {
      job->queue_s = secs(job->started - job->created);
      job->run_s = secs(now - job->started);
    } else {
      job->queue_s = secs(now - job->created);
    }
    ++job->version;
    job->cv.notify_all();
    job->done_cv.notify_all();
  }
  metrics_.count_outcome(job_state_name(state));
  if (state == JobState::kCancelled) metrics_.count_cancelled();
  if (job->timed_out) metrics_.count_timeout();
  if (state == JobState::kSucceeded) metrics_.count_images(job->request.n);
}

// Moves queued jobs with batch key `key` into `out` while they fit beside `images` running
// images, and returns the images taken. Static batch formation (`from_front_only` false) takes
// compatible jobs from anywhere in the queue; admission into a running batch takes them only from
// the front, so a job the running batch cannot take is never passed over indefinitely.
int JobManager::take_compatible(const std::string& key, int images, bool from_front_only,
                                std::vector<std::shared_ptr<Job>>* out) {
  int taken = 0;
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (images + taken >= opts_.max_batch) break;
    const int n = (*it)->request.n;
    const bool fits = (images == 0 && out->empty()) || images + taken + n <= opts_.max_batch;
    if (fits && engine_.batch_key((*it)->request) == key) {
      taken += n;
      out->push_back(*it);
      it = queue_.erase(it);
    } else if (from_front_only) {
      break;
    } else {
      ++it;
    }
  }
  return taken;
}

// The engine thread's side of one running batch: turns jobs into EngineJobs when they start,
// admits queued ones (continuous batching) and finishes each job as the engine reports it.
class JobManager::RunningBatch : public BatchFeed {
 public:
  RunningBatch(JobManager& m, std::string key) : m_(m), key_(std::move(key)) {}

  // Marks `jobs` running (they are already in running_) and returns their EngineJobs.
  std::vector<EngineJob> start(const std::vector<std::shared_ptr<Job>>& jobs, int running_images,
                               int running_jobs) {
    const auto now = Clock::now();
    std::vector<EngineJob> out;
    out.reserve(jobs.size());
    for (const auto& job : jobs) {
      {
        std::lock_guard<std::mutex> jl(job->mu);
        job->state = JobState::kRunning;
        job->started = now;
        ++job->version;
        job->cv.notify_all();
      }
      m_.metrics_.observe_queue_wait(secs(now - job->created));
      Job* raw = job.get();
      const uint64_t tag = ++tags_;
      live_[tag] = job;
      out.push_back({&job->request,
                     [raw](int step, int) {
                       std::lock_guard<std::mutex> jl(raw->mu);
                       raw->step = step;
                       ++raw->version;
                       raw->cv.notify_all();
                     },
                     &job->cancel, tag});
    }
    m_.metrics_.observe_batch(running_images, running_jobs);
    return out;
  }

  std::vector<EngineJob> admit(int images) override {
    if (!m_.opts_.continuous_batching) return {};
    std::vector<std::shared_ptr<Job>> jobs;
    int running_jobs = 0, taken = 0;
    {
      std::lock_guard<std::mutex> lock(m_.mu_);
      if (m_.queue_.empty() || images >= m_.opts_.max_batch) return {};
      taken = m_.take_compatible(key_, images, /*from_front_only=*/true, &jobs);
      if (jobs.empty()) return {};
      m_.running_.insert(m_.running_.end(), jobs.begin(), jobs.end());
      running_jobs = static_cast<int>(m_.running_.size());
    }
    return start(jobs, images + taken, running_jobs);
  }

  void finished(const EngineJob& ejob, Result<ImageOutput> result) override {
    auto it = live_.find(ejob.tag);
    if (it == live_.end()) return;  // not ours, or reported twice
    std::shared_ptr<Job> job = std::move(it->second);
    live_.erase(it);
    const double run_s = secs(Clock::now() - job->started);
    m_.metrics_.observe_run_time(run_s);
    if (result.is_ok()) {
      m_.finish(job, JobState::kSucceeded, Status::ok(),
                std::make_shared<const ImageOutput>(std::move(result).value()));
    } else if (result.status().code() == StatusCode::kCancelled && job->cancel.load()) {
      m_.finish(job, JobState::kCancelled, result.status(), nullptr);
    } else {
      m_.finish(job, JobState::kFailed, result.status(), nullptr);
    }
    std::lock_guard<std::mutex> lock(m_.mu_);
    m_.mean_run_s_ = 0.8 * m_.mean_run_s_ + 0.2 * run_s;
    m_.running_.erase(std::remove(m_.running_.begin(), m_.running_.end(), job), m_.running_.end());
    m_.idle_cv_.notify_all();
  }

  // Jobs the engine never reported (it threw, or broke the contract) fail.
  void fail_unfinished() {
    while (!live_.empty()) {
      EngineJob e;
      e.tag = live_.begin()->first;
      finished(e, internal_error("the engine failed this batch"));
    }
  }

 private:
  JobManager& m_;
  const std::string key_;
  uint64_t tags_ = 0;
  std::map<uint64_t, std::shared_ptr<Job>> live_;  // started, not yet finished
};

void JobManager::engine_loop() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> batch;
    std::string key;
    int images = 0;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_
      key = engine_.batch_key(queue_.front()->request);
      images = take_compatible(key, 0, /*from_front_only=*/false, &batch);
      running_ = batch;
    }
    RunningBatch running(*this, key);
    const std::vector<EngineJob> ejobs =
        running.start(batch, images, static_cast<int>(batch.size()));
    try {
      engine_.run_continuous(ejobs, running);
    } catch (const std::exception&) {
    }
    running.fail_unfinished();
    std::lock_guard<std::mutex> lock(mu_);
    running_.clear();
    idle_cv_.notify_all();
  }
}

void JobManager::housekeeping_loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    house_cv_.wait_for(lock, std::chrono::milliseconds(50));
    const auto now = Clock::now();
    // Timeouts: queued jobs fail at once; running ones are cancelled (and reported as failed).
    std::vector<std::shared_ptr<Job>> expired;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if ((*it)->deadline <= now) {
        expired.push_back(*it);
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& job : running_) {
      if (job->deadline <= now && !job->cancel.load()) {
        std::lock_guard<std::mutex> jl(job->mu);
        job->timed_out = true;
        job->cancel.store(true);
      }
    }
    // Expiry of finished async jobs.
    const auto ttl = std::chrono::microseconds(static_cast<int64_t>(opts_.job_ttl_s * 1e6));
    for (auto it = table_.begin(); it != table_.end();) {
      Job& job = *it->second;
      bool expire = false;
      if (!job.sync) {
        std::lock_guard<std::mutex> jl(job.mu);
        expire = is_final(job.state) && job.finished + ttl <= now;
      }
      if (expire) {
        tombstones_[it->first] = now + std::max<Clock::duration>(10 * ttl, std::chrono::hours(1));
        it = table_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = tombstones_.begin(); it != tombstones_.end();)
      it = it->second <= now || tombstones_.size() > 100000 ? tombstones_.erase(it) : ++it;
    if (!expired.empty()) {
      lock.unlock();
      for (auto& job : expired) {
        {
          std::lock_guard<std::mutex> jl(job->mu);
          job->timed_out = true;
        }
        finish(job, JobState::kFailed, Status(), nullptr);
      }
      lock.lock();
      idle_cv_.notify_all();
    }
  }
}

int JobManager::drain(std::chrono::milliseconds deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  if (drained_) return cancelled_at_drain_;
  draining_.store(true);
  idle_cv_.wait_for(lock, deadline, [&] { return queue_.empty() && running_.empty(); });
  std::vector<std::shared_ptr<Job>> left(queue_.begin(), queue_.end());
  queue_.clear();
  int n = static_cast<int>(left.size()) + static_cast<int>(running_.size());
  for (auto& job : running_) {
    std::lock_guard<std::mutex> jl(job->mu);
    if (job->error.is_ok()) job->error = cancelled("server shutting down");
    job->cancel.store(true);
  }
  lock.unlock();
  for (auto& job : left) {
    job->cancel.store(true);
    finish(job, JobState::kCancelled, cancelled("server shutting down"), nullptr);
  }
  lock.lock();
  idle_cv_.wait(lock, [&] { return running_.empty(); });
  stop_ = true;
  drained_ = true;
  cancelled_at_drain_ = n;
  work_cv_.notify_all();
  house_cv_.notify_all();
  lock.unlock();
  if (engine_thread_.joinable()) engine_thread_.join();
  if (house_thread_.joinable()) house_thread_.join();
  return n;
}

}  // namespace duet::serve
