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

void JobManager::engine_loop() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> batch;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_
      const std::string key = engine_.batch_key(queue_.front()->request);
      int images = 0;
      for (auto it = queue_.begin(); it != queue_.end();) {
        const int n = (*it)->request.n;
        const bool fits = batch.empty() || images + n <= opts_.max_batch;
        if (fits && engine_.batch_key((*it)->request) == key) {
          images += n;
          batch.push_back(*it);
          it = queue_.erase(it);
        } else {
          ++it;
        }
        if (images >= opts_.max_batch) break;
      }
      running_ = batch;
    }
    const auto t0 = Clock::now();
    std::vector<EngineJob> ejobs;
    int images = 0;
    for (auto& job : batch) {
      {
        std::lock_guard<std::mutex> jl(job->mu);
        job->state = JobState::kRunning;
        job->started = t0;
        ++job->version;
        job->cv.notify_all();
      }
      metrics_.observe_queue_wait(secs(t0 - job->created));
      images += job->request.n;
      Job* raw = job.get();
      ejobs.push_back({&job->request,
                       [raw](int step, int) {
                         std::lock_guard<std::mutex> jl(raw->mu);
                         raw->step = step;
                         ++raw->version;
                         raw->cv.notify_all();
                       },
                       &job->cancel});
    }
    metrics_.observe_batch(images, static_cast<int>(batch.size()));
    std::vector<Result<ImageOutput>> results;
    try {
      results = engine_.run_batch(ejobs);
    } catch (const std::exception& e) {
      results.clear();
    }
    const double run_s = secs(Clock::now() - t0);
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& job = batch[i];
      metrics_.observe_run_time(run_s);
      if (i >= results.size()) {
        finish(job, JobState::kFailed, internal_error("the engine failed this batch"), nullptr);
      } else if (results[i].is_ok()) {
        finish(job, JobState::kSucceeded, Status::ok(),
               std::make_shared<const ImageOutput>(std::move(results[i]).value()));
      } else if (results[i].status().code() == StatusCode::kCancelled && job->cancel.load()) {
        finish(job, JobState::kCancelled, results[i].status(), nullptr);
      } else {
        finish(job, JobState::kFailed, results[i].status(), nullptr);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    mean_run_s_ = 0.8 * mean_run_s_ + 0.2 * run_s;
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
