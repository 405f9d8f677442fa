// duet serve --model DIR [...] — the HTTP server (OpenAI-style images API, async jobs with SSE
// progress, web UI, Prometheus metrics). See docs/serving.md.
//
// SIGTERM / SIGINT: stop accepting work, let queued and running jobs finish for up to
// --drain-timeout seconds, cancel the rest, exit 0.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "command.h"
#include "duet/fleet.h"
#include "duet/serve.h"
#include "engine_loader.h"

namespace {

struct ServeArgs {
  duet::cli::EngineArgs engine;
  duet::ServeOptions opts;
  std::string api_key_file;
  double drain_timeout_s = 30;
  std::string broker;  // --broker: run as a gateway (docs/scale-out.md)
  std::string broker_prefix = "duet";
  std::string broker_model;
  double broker_timeout_s = 1;
};

int run_gateway(const ServeArgs& a, const duet::ServeOptions& opts, const sigset_t& stop_signals) {
  duet::GatewayOptions go;
  go.serve = opts;
  go.broker = a.broker;
  go.prefix = a.broker_prefix;
  go.model = a.broker_model;
  go.broker_timeout_s = a.broker_timeout_s;
  auto gw = duet::Gateway::start(go);
  if (!gw) {
    std::fprintf(stderr, "duet serve: %s\n", gw.status().message().c_str());
    return 1;
  }
  std::printf(
      "duet serve: gateway for broker %s (prefix %s) listening on http://%s:%d "
      "(max-queue %d per model)\n",
      a.broker.c_str(), a.broker_prefix.c_str(), opts.host.c_str(), (*gw)->port(), opts.max_queue);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  (*gw)->shutdown();
  std::printf("duet serve: gateway stopped (jobs stay in the broker)\n");
  std::fflush(stdout);
  return 0;
}

int run_serve(const ServeArgs& a) {
  if (!duet::serve_available()) {
    std::fprintf(stderr, "duet serve: this build has no HTTP server (cpp-httplib not linked)\n");
    return 1;
  }
  duet::ServeOptions opts = a.opts;
  if (!a.api_key_file.empty()) {
    std::ifstream f(a.api_key_file);
    if (!f) {
      std::fprintf(stderr, "duet serve: cannot read --api-key-file %s\n", a.api_key_file.c_str());
      return 1;
    }
    std::stringstream ss;
    ss << f.rdbuf();
    opts.api_key = ss.str();
    while (!opts.api_key.empty() && (opts.api_key.back() == '\n' || opts.api_key.back() == '\r' ||
                                     opts.api_key.back() == ' '))
      opts.api_key.pop_back();
    if (opts.api_key.empty()) {
      std::fprintf(stderr, "duet serve: --api-key-file %s is empty\n", a.api_key_file.c_str());
      return 1;
    }
  }

  // Block the stop signals in every thread (created below) and wait for them here.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (!a.broker.empty()) {
    if (!a.engine.model.empty() || a.engine.fake) {
      std::fprintf(stderr,
                   "duet serve: --broker runs a gateway without a model (--model and "
                   "--fake-engine belong to `duet worker`)\n");
      return 1;
    }
    return run_gateway(a, opts, stop_signals);
  }
  std::unique_ptr<duet::ImageEngine> engine = duet::cli::load_engine(a.engine, "duet serve");
  if (!engine) return 1;
  const std::string model_name = engine->info().model;
  auto server = duet::Server::start(std::move(engine), opts);
  if (!server) {
    std::fprintf(stderr, "duet serve: %s\n", server.status().to_string().c_str());
    return 1;
  }
  std::printf("duet serve: model %s listening on http://%s:%d (max-batch %d%s, max-queue %d)\n",
              model_name.c_str(), opts.host.c_str(), (*server)->port(), opts.max_batch,
              opts.continuous_batching ? ", continuous" : ", static", opts.max_queue);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::printf("duet serve: %s received, draining (up to %.0f s)\n",
              sig == SIGTERM ? "SIGTERM" : "SIGINT", a.drain_timeout_s);
  std::fflush(stdout);
  const int cancelled = (*server)->shutdown(
      std::chrono::milliseconds(static_cast<int64_t>(a.drain_timeout_s * 1000)));
  std::printf("duet serve: stopped (%d jobs cancelled at the deadline)\n", cancelled);
  std::fflush(stdout);
  return 0;
}

static duet::cli::CommandRegistrar registrar(
    "serve", "HTTP server: OpenAI-style images API, async jobs, web UI, metrics",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      duet::cli::add_engine_options(sub, &a->engine);
      sub.add_option("--host", a->opts.host, "address to listen on")->capture_default_str();
      sub.add_option("--port", a->opts.port, "port (0 = any free port)")->capture_default_str();
      sub.add_option("--max-queue", a->opts.max_queue, "queued jobs before 429")
          ->capture_default_str()
          ->check(CLI::Range(1, 1000000));
      sub.add_option("--max-batch", a->opts.max_batch, "images per denoiser batch")
          ->capture_default_str()
          ->check(CLI::Range(1, 1024));
      sub.add_flag("--continuous-batching", a->opts.continuous_batching,
                   "queued requests join the running batch between model calls and leave it "
                   "when done (default: each batch runs to its end before the next starts)");
      sub.add_option("--timeout", a->opts.timeout_s, "per-request timeout, queue + run (s)")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      sub.add_option("--api-key-file", a->api_key_file,
                     "file holding the API key (Bearer) required on every route but "
                     "/healthz, /readyz and the UI page");
      sub.add_option("--http-threads", a->opts.http_threads, "HTTP worker threads")
          ->capture_default_str()
          ->check(CLI::Range(1, 4096));
      sub.add_option("--job-ttl", a->opts.job_ttl_s, "seconds finished jobs are kept")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--max-body", a->opts.max_body, "request body limit (bytes)")
          ->capture_default_str()
          ->check(CLI::Range(size_t{1}, size_t{1} << 30));
      sub.add_option("--drain-timeout", a->drain_timeout_s,
                     "on SIGTERM, seconds to finish in-flight work before cancelling it")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--read-timeout", a->opts.read_timeout_s,
                     "seconds one socket read may wait before the connection is closed")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      sub.add_option("--request-deadline", a->opts.request_deadline_s,
                     "seconds a connection may take to deliver a request's headers and body "
                     "(slow clients are answered 408 and closed; 0 = no deadline)")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      sub.add_flag("--log-requests", a->opts.log_requests, "log every request to stderr");
      sub.add_option("--broker", a->broker,
                     "run as a gateway over a Redis broker, redis://HOST[:PORT][/DB]: no model, "
                     "jobs go to `duet worker`s (docs/scale-out.md)");
      sub.add_option("--broker-prefix", a->broker_prefix, "key prefix in the broker")
          ->capture_default_str();
      sub.add_option("--broker-model", a->broker_model,
                     "gateway: the model to serve (default: the one the workers publish)");
      sub.add_option("--broker-timeout", a->broker_timeout_s,
                     "gateway: seconds one broker call may take before the request gets 503")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      return [a]() { return run_serve(*a); };
    });

}  // namespace
