// duet::run_worker: one consumer of a model's job stream (docs/scale-out.md). Jobs read from the
// broker are handed to a local JobManager (the same batching and engine thread as `duet serve`,
// so the images are the same as in-process); this thread publishes progress, forwards
// cancellation, writes each result behind the attempt fence, acknowledges it, heartbeats its
// pending entries and, when idle, reclaims the entries of consumers that went silent.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "duet/fleet.h"
#include "serve/api.h"
#include "serve/broker_redis.h"
#include "serve/fleet_protocol.h"
#include "serve/jobs.h"
#include "serve/worker_metrics.h"

namespace duet {
namespace {

using serve::Reply;
namespace fleet = serve::fleet;
using SteadyClock = std::chrono::steady_clock;

struct Active {
  std::string id, entry;
  int attempt = 0;
  std::shared_ptr<serve::Job> job;
  int published_step = 0;
  bool done = false;  // result written (or dropped by the fence), entry acknowledged
};

class Worker {
 public:
  Worker(ImageEngine& engine, const WorkerOptions& o, serve::BrokerUrl url)
      : engine_(engine), o_(o), url_(std::move(url)) {
    keys_.prefix = o.prefix;
    model_ = engine.info().model;
    stream_ = keys_.stream(model_);
    timeout_ = std::chrono::milliseconds(static_cast<int64_t>(o.broker_timeout_s * 1000));
    ServeOptions so;
    so.max_batch = o.max_batch;
    so.continuous_batching = o.continuous_batching;
    so.max_queue = 1 << 20;
    so.timeout_s = o.timeout_s;
    so.job_ttl_s = 5;
    jobs_ = std::make_unique<serve::JobManager>(engine, so, metrics_.local);
  }

  Status join() {
    auto c = serve::RedisConn::connect(url_, timeout_);
    if (!c) return c.status();
    conn_ = std::move(c).value();
    if (auto r = heartbeat(); !r.is_ok()) return r;
    auto g = conn_->command({"XGROUP", "CREATE", stream_, fleet::kGroup, "0", "MKSTREAM"});
    if (!g && g.status().message().find("BUSYGROUP") == std::string::npos) return g.status();
    return Status::ok();
  }

  void run(const std::atomic<bool>& stop) {
    auto last_beat = SteadyClock::now();
    while (!stop.load()) {
      if (!connected()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      if (SteadyClock::now() - last_beat > std::chrono::milliseconds(500)) {
        (void)heartbeat();
        last_beat = SteadyClock::now();
      }
      if (active_.empty()) {
        take_jobs();
      } else {
        poll_active(false);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    // Stopping: finish the current batch within the drain deadline, hand back the rest.
    const auto deadline = SteadyClock::now() + std::chrono::milliseconds(
                                                   static_cast<int64_t>(o_.drain_timeout_s * 1000));
    while (!active_.empty() && SteadyClock::now() < deadline) {
      if (connected()) {
        poll_active(false);
        if (SteadyClock::now() - last_beat > std::chrono::milliseconds(500)) {
          (void)heartbeat();
          last_beat = SteadyClock::now();
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    for (auto& a : active_) jobs_->cancel(a.job, "worker shutting down");
    jobs_->drain(std::chrono::milliseconds(0));
    for (int i = 0; i < 50 && !active_.empty(); ++i) {
      if (connected()) poll_active(true);
      if (!active_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (conn_ && !conn_->broken()) (void)conn_->command({"DEL", keys_.worker(o_.name)});
  }

  serve::WorkerCounters& counters() { return metrics_; }
  serve::JobManager& jobs() { return *jobs_; }

 private:
  bool connected() {
    if (conn_ && !conn_->broken()) return true;
    auto c = serve::RedisConn::connect(url_, timeout_);
    if (!c) {
      if (!broker_down_) std::fprintf(stderr, "duet worker: %s\n", c.status().message().c_str());
      broker_down_ = true;
      metrics_.broker_up.store(0);
      return false;
    }
    conn_ = std::move(c).value();
    if (broker_down_) std::fprintf(stderr, "duet worker: broker %s is back\n", url_.text.c_str());
    broker_down_ = false;
    metrics_.broker_up.store(1);
    (void)heartbeat();
    (void)conn_->command({"XGROUP", "CREATE", stream_, fleet::kGroup, "0", "MKSTREAM"});
    return true;
  }

  Result<Reply> cmd(const std::vector<std::string>& args) {
    auto r = conn_->command(args);
    if (!r && conn_->broken()) metrics_.broker_up.store(0);
    return r;
  }

  // The model description and this worker's liveness (TTL'd), and its pending entries' idle
  // time reset (the visibility timeout counts silence, not run time).
  Status heartbeat() {
    const int ttl = std::max(3, static_cast<int>(o_.visibility_timeout_s * 3));
    auto r = cmd({"SET", keys_.model(model_), fleet::info_to_json(engine_.info()), "EX",
                  std::to_string(ttl)});
    if (!r) return r.status();
    (void)cmd({"SADD", keys_.models(), model_});
    (void)cmd({"SET", keys_.worker(o_.name), model_, "EX", std::to_string(ttl)});
    std::vector<std::string> args = {"XCLAIM", stream_, fleet::kGroup, o_.name, "0"};
    for (const auto& a : active_)
      if (!a.done) args.push_back(a.entry);
    if (args.size() > 5) {
      args.push_back("JUSTID");
      (void)cmd(args);
    }
    return Status::ok();
  }

  // Reads entries (first those of silent consumers, then new ones) and starts them locally.
  void take_jobs() {
    std::vector<std::pair<std::string, std::string>> entries;  // (entry id, job id), reclaimed?
    std::vector<bool> reclaimed;
    const std::string idle_ms =
        std::to_string(static_cast<int64_t>(o_.visibility_timeout_s * 1000));
    auto ac = cmd({"XAUTOCLAIM", stream_, fleet::kGroup, o_.name, idle_ms, "0-0", "COUNT",
                   std::to_string(o_.max_batch)});
    if (!ac) return;
    if (ac->elements.size() >= 2)
      for (const auto& e : ac->elements[1].elements)
        if (e.elements.size() == 2) {
          entries.push_back({e.elements[0].str, serve::reply_field(e.elements[1], "id")});
          reclaimed.push_back(true);
        }
    // New entries: a blocking read, then one that does not block for whatever else arrived
    // meanwhile (the server hands a blocked reader the first entry alone).
    for (int round = 0; round < 2 && static_cast<int>(entries.size()) < o_.max_batch; ++round) {
      std::vector<std::string> args = {
          "XREADGROUP", "GROUP", fleet::kGroup,
          o_.name,      "COUNT", std::to_string(o_.max_batch - entries.size())};
      if (entries.empty()) {
        args.push_back("BLOCK");
        args.push_back("200");
      }
      for (const char* a : {"STREAMS", ">"}) args.push_back(a);
      args.insert(args.end() - 1, stream_);
      auto r = entries.empty() ? conn_->blocking_command(args, std::chrono::milliseconds(200))
                               : cmd(args);
      if (!r || r->nil()) break;
      for (const auto& s : r->elements)
        if (s.elements.size() == 2)
          for (const auto& e : s.elements[1].elements)
            if (e.elements.size() == 2) {
              entries.push_back({e.elements[0].str, serve::reply_field(e.elements[1], "id")});
              reclaimed.push_back(false);
            }
    }
    if (entries.empty()) return;
    std::vector<std::shared_ptr<serve::Job>> batch;
    for (size_t i = 0; i < entries.size(); ++i) {
      const auto& [entry, id] = entries[i];
      auto c = cmd({"EVAL", fleet::kClaimScript, "3", keys_.job(id), keys_.backlog(model_),
                    keys_.stats(model_), o_.name, std::to_string(o_.max_attempts),
                    std::to_string(fleet::now_ms()),
                    "stopped responding (no heartbeat for " +
                        std::to_string(static_cast<int>(o_.visibility_timeout_s)) + " s)",
                    std::to_string(static_cast<int64_t>(o_.job_ttl_s))});
      if (!c) return;  // the broker went away: the entries stay pending and are reclaimed
      const int64_t attempt = c->elements.empty() ? -2 : serve::reply_int(c->elements[0]);
      if (attempt < 0 || c->elements.size() < 2) {
        ack(entry);
        continue;
      }
      auto req = fleet::request_from_json(c->elements[1].str);
      if (!req) {
        finish_failed_now(id, entry, static_cast<int>(attempt), req.status().message());
        continue;
      }
      if (reclaimed[i]) metrics_.reclaimed.fetch_add(1);
      metrics_.claimed.fetch_add(1);
      Active a;
      a.id = id;
      a.entry = entry;
      a.attempt = static_cast<int>(attempt);
      a.job = jobs_->make_job(std::move(req).value(), /*sync=*/false);
      batch.push_back(a.job);
      active_.push_back(std::move(a));
    }
    if (batch.empty()) return;
    batch_start_ = SteadyClock::now();
    batch_images_ = 0;
    for (const auto& j : batch) batch_images_ += j->request.n;
    outcome_ = {};
    (void)jobs_->submit_all(batch);
  }

  void ack(const std::string& entry) {
    (void)cmd({"XACK", stream_, fleet::kGroup, entry});
    (void)cmd({"XDEL", stream_, entry});
  }

  void finish_failed_now(const std::string& id, const std::string& entry, int attempt,
                         const std::string& why) {
    auto r = cmd({"EVAL", fleet::kFinishScript, "2", keys_.job(id), keys_.stats(model_),
                  std::to_string(attempt), std::to_string(static_cast<int64_t>(o_.job_ttl_s)),
                  "failed", "error_code", "invalid_argument", "error_message", why, "finished_ms",
                  std::to_string(fleet::now_ms())});
    if (r) ack(entry);
  }

  // Progress, cancellation and results of the running jobs. `stopping`: what is not final now
  // was cancelled by the shutdown and is handed back.
  void poll_active(bool stopping) {
    const bool check_cancel = ++polls_ % 10 == 0;
    for (auto& a : active_) {
      if (a.done) continue;
      serve::JobState state;
      int step;
      {
        std::lock_guard<std::mutex> lock(a.job->mu);
        state = a.job->state;
        step = a.job->step;
      }
      if (!serve::is_final(state)) {
        if (step != a.published_step) {
          if (!cmd({"HSET", keys_.job(a.id), "step", std::to_string(step)})) return;
          a.published_step = step;
        }
        if (check_cancel) {
          auto c = cmd({"HGET", keys_.job(a.id), "cancel"});
          if (!c) return;
          if (c->str == "1") jobs_->cancel(a.job, "cancelled by the client");
        }
        continue;
      }
      if (!write_result(a, stopping)) return;  // broker down: retried on the next poll
    }
    if (std::all_of(active_.begin(), active_.end(), [](const Active& a) { return a.done; }) &&
        !active_.empty()) {
      std::printf(
          "duet worker %s: batch of %zu jobs (%d images) in %.3f s: %d succeeded, %d "
          "failed, %d cancelled, %d retried, %d handed back, %d fenced\n",
          o_.name.c_str(), active_.size(), batch_images_,
          std::chrono::duration<double>(SteadyClock::now() - batch_start_).count(),
          outcome_.succeeded, outcome_.failed, outcome_.cancelled, outcome_.retried,
          outcome_.handed_back, outcome_.fenced);
      std::fflush(stdout);
      metrics_.batches.fetch_add(1);
      active_.clear();
    }
  }

  // false when the broker could not be reached (nothing changed; try again).
  bool write_result(Active& a, bool stopping) {
    serve::Job& job = *a.job;
    serve::JobState state;
    Status error;
    {
      std::lock_guard<std::mutex> lock(job.mu);
      state = job.state;
      error = job.error;
    }
    const bool shutdown =
        state == serve::JobState::kCancelled && error.message() == "worker shutting down";
    Result<Reply> r = Reply{};
    if (state == serve::JobState::kSucceeded) {
      std::vector<std::string> args = {"EVAL",
                                       fleet::kFinishScript,
                                       "2",
                                       keys_.job(a.id),
                                       keys_.stats(model_),
                                       std::to_string(a.attempt),
                                       std::to_string(static_cast<int64_t>(o_.job_ttl_s)),
                                       "succeeded",
                                       "step",
                                       std::to_string(job.request.steps),
                                       "run_s",
                                       std::to_string(job.run_s),
                                       "encode_s",
                                       std::to_string(job.output->timings.encode_s),
                                       "denoise_s",
                                       std::to_string(job.output->timings.denoise_s),
                                       "evals",
                                       std::to_string(job.output->model_evaluations),
                                       "seeds",
                                       nlohmann::json(job.output->seeds).dump(),
                                       "finished_ms",
                                       std::to_string(fleet::now_ms())};
      for (int k = 0; k < job.request.n; ++k) {
        auto png = serve::job_png(job, k);
        if (!png) return finish_failed(a, png.status().message());
        args.push_back("png:" + std::to_string(k));
        args.push_back(std::move(png).value());
      }
      r = cmd(args);
      if (!r) return false;
      count_written(serve::reply_int(*r) == 1, outcome_.succeeded);
    } else if (state == serve::JobState::kCancelled && !shutdown) {
      r = cmd({"EVAL", fleet::kFinishScript, "2", keys_.job(a.id), keys_.stats(model_),
               std::to_string(a.attempt), std::to_string(static_cast<int64_t>(o_.job_ttl_s)),
               "cancelled", "error_code", "cancelled", "error_message", error.message(), "run_s",
               std::to_string(job.run_s), "finished_ms", std::to_string(fleet::now_ms())});
      if (!r) return false;
      count_written(serve::reply_int(*r) == 1, outcome_.cancelled);
    } else {
      // Failed (or handed back at shutdown): queued again; the next claim counts the attempt
      // and ends the job `failed` with this reason once max_attempts is reached.
      const bool hand_back = shutdown || stopping;
      r = cmd({"EVAL", fleet::kRetryScript, "3", keys_.job(a.id), stream_, keys_.backlog(model_),
               std::to_string(a.attempt),
               hand_back ? std::string("handed back by worker ") + o_.name
                         : "attempt " + std::to_string(a.attempt) + " on worker " + o_.name + ": " +
                               error.message(),
               a.id, hand_back ? "1" : "0"});
      if (!r) return false;
      count_written(serve::reply_int(*r) == 1, hand_back ? outcome_.handed_back : outcome_.retried);
      if (!hand_back) metrics_.failed_attempts.fetch_add(1);
    }
    if (serve::reply_int(*r) == 1) ack(a.entry);  // a fenced worker leaves the entry to its owner
    a.done = true;
    return true;
  }

  bool finish_failed(Active& a, const std::string& why) {
    finish_failed_now(a.id, a.entry, a.attempt, why);
    a.done = true;
    ++outcome_.failed;
    return true;
  }

  void count_written(bool written, int& counter) {
    if (written) {
      ++counter;
      return;
    }
    ++outcome_.fenced;
    metrics_.fenced.fetch_add(1);
    std::fprintf(stderr,
                 "duet worker %s: fenced: the job was taken over by another attempt while this "
                 "worker was silent; its result is dropped\n",
                 o_.name.c_str());
  }

  ImageEngine& engine_;
  WorkerOptions o_;
  serve::BrokerUrl url_;
  fleet::Keys keys_;
  std::string model_, stream_;
  std::chrono::milliseconds timeout_{};
  std::unique_ptr<serve::RedisConn> conn_;
  bool broker_down_ = false;
  serve::WorkerCounters metrics_;
  std::unique_ptr<serve::JobManager> jobs_;
  std::vector<Active> active_;
  uint64_t polls_ = 0;
  SteadyClock::time_point batch_start_;
  int batch_images_ = 0;
  struct {
    int succeeded = 0, failed = 0, cancelled = 0, retried = 0, handed_back = 0, fenced = 0;
  } outcome_;
};

}  // namespace

Status run_worker(ImageEngine& engine, const WorkerOptions& options, const std::atomic<bool>& stop,
                  const std::function<void(int)>& ready) {
  auto url = serve::parse_broker_url(options.broker);
  if (!url) return url.status();
  if (options.max_batch < 1 || options.max_attempts < 1 || !(options.visibility_timeout_s > 0))
    return invalid_argument(
        "worker options: max-batch, max-attempts and visibility-timeout must be positive");
  WorkerOptions o = options;
  if (o.name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    o.name = std::string(host) + "-" + std::to_string(getpid());
  }
  Worker w(engine, o, *url);
  if (auto s = w.join(); !s.is_ok()) return s;
  std::unique_ptr<serve::WorkerMetricsServer> ms;
  int port = 0;
  if (o.metrics_port >= 0) {
    auto m = serve::WorkerMetricsServer::start(o.metrics_host, o.metrics_port, w.counters(),
                                               w.jobs(), engine);
    if (!m) return m.status();
    ms = std::move(m).value();
    port = ms->port();
  }
  if (ready) ready(port);
  w.run(stop);
  return Status::ok();
}

}  // namespace duet
