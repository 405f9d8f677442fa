// duet worker --broker redis://HOST:PORT[/DB] --model DIR [...] — one worker of a fleet behind
// `duet serve --broker` gateways (docs/scale-out.md): loads the model, consumes its job stream,
// batches compatible jobs as `duet serve` does and stores the results in the broker.
//
// SIGTERM / SIGINT: take no new jobs, finish the current batch (up to --drain-timeout s), hand
// back what is left, exit 0.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "command.h"
#include "duet/fleet.h"
#include "engine_loader.h"

namespace {

struct WorkerArgs {
  duet::cli::EngineArgs engine;
  duet::WorkerOptions opts;
};

int run_worker_command(const WorkerArgs& a) {
  if (a.opts.broker.empty()) {
    std::fprintf(stderr, "duet worker: --broker redis://HOST[:PORT][/DB] is required\n");
    return 1;
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::atomic<bool> stop{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (sig == SIGTERM || sig == SIGINT) {
      std::printf("duet worker: %s received, finishing the current batch\n",
                  sig == SIGTERM ? "SIGTERM" : "SIGINT");
      std::fflush(stdout);
    }
    stop.store(true);
  });
  auto finish = [&](int rc) {
    if (!stop.exchange(true)) pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
    return rc;
  };
  std::unique_ptr<duet::ImageEngine> engine = duet::cli::load_engine(a.engine, "duet worker");
  if (!engine) return finish(1);
  duet::Status s = duet::run_worker(*engine, a.opts, stop, [&](int metrics_port) {
    std::printf("duet worker: model %s joined broker %s (max-batch %d%s)",
                engine->info().model.c_str(), a.opts.broker.c_str(), a.opts.max_batch,
                a.opts.continuous_batching ? ", continuous" : "");
    if (metrics_port > 0)
      std::printf(", metrics on http://%s:%d/metrics", a.opts.metrics_host.c_str(), metrics_port);
    std::printf("\n");
    std::fflush(stdout);
  });
  if (!s.is_ok()) {
    std::fprintf(stderr, "duet worker: %s\n", s.message().c_str());
    return finish(1);
  }
  std::printf("duet worker: stopped\n");
  std::fflush(stdout);
  return finish(0);
}

static duet::cli::CommandRegistrar registrar(
    "worker", "fleet worker: runs jobs from a Redis broker for `duet serve --broker` gateways",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<WorkerArgs>();
      duet::cli::add_engine_options(sub, &a->engine);
      sub.add_option("--broker", a->opts.broker, "the broker, redis://HOST[:PORT][/DB]");
      sub.add_option("--broker-prefix", a->opts.prefix, "key prefix in the broker")
          ->capture_default_str();
      sub.add_option("--name", a->opts.name, "consumer name (default HOST-PID)");
      sub.add_option("--max-batch", a->opts.max_batch, "images per denoiser batch")
          ->capture_default_str()
          ->check(CLI::Range(1, 1024));
      sub.add_flag("--continuous-batching", a->opts.continuous_batching,
                   "jobs join the running batch between model calls (as duet serve)");
      sub.add_option("--visibility-timeout", a->opts.visibility_timeout_s,
                     "seconds without a heartbeat before another worker takes over a job")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      sub.add_option("--max-attempts", a->opts.max_attempts,
                     "attempts before a job ends `failed` with the last reason")
          ->capture_default_str()
          ->check(CLI::Range(1, 100));
      sub.add_option("--job-ttl", a->opts.job_ttl_s, "seconds results are kept in the broker")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      sub.add_option("--timeout", a->opts.timeout_s, "per-job run timeout on this worker (s)")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      sub.add_option("--drain-timeout", a->opts.drain_timeout_s,
                     "on SIGTERM, seconds to finish the batch before handing it back")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--metrics-port", a->opts.metrics_port,
                     "serve /metrics on this port (0 = any free port; default none)")
          ->check(CLI::Range(0, 65535));
      sub.add_option("--metrics-host", a->opts.metrics_host, "address for --metrics-port")
          ->capture_default_str();
      sub.add_option("--broker-timeout", a->opts.broker_timeout_s,
                     "seconds one broker call may take")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      return [a]() { return run_worker_command(*a); };
    });

}  // namespace
