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

#include "backend_option.h"
#include "command.h"
#include "duet/config.h"
#include "duet/model.h"
#include "duet/pipeline.h"
#include "duet/serve.h"
#include "precision_option.h"

namespace {

struct ServeArgs {
  std::string model;
  bool fake = false;
  double fake_step_ms = 20;
  duet::ServeOptions opts;
  std::string api_key_file;
  int threads = 0;
  std::string precision;        // --precision (empty: the checkpoint's, else f32)
  std::string backend = "cpu";  // --backend
  double drain_timeout_s = 30;
  double prompt_cache_mb = 64;
  double max_memory_mb = 0;  // --max-memory (0 = no cap)
};

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

  std::unique_ptr<duet::ImageEngine> engine;
  if (a.fake) {
    duet::FakeEngineOptions fo;
    fo.step_ms = a.fake_step_ms;
    fo.row_ms = a.fake_step_ms / 8;
    engine = duet::make_fake_engine(fo);
  } else {
    if (a.model.empty()) {
      std::fprintf(stderr, "duet serve: --model DIR is required\n");
      return 1;
    }
    auto precision = duet::cli::resolve_precision(a.precision, a.model);
    if (!precision) {
      std::fprintf(stderr, "duet serve: %s\n", precision.status().to_string().c_str());
      return 1;
    }
    // Loaded on a short-lived thread: the OpenMP thread pool that loading creates goes away with
    // it, so the engine thread's pool is the process's only one. Two pools would outnumber the
    // cores, and libgomp then stops spinning between parallel regions (throttled spin): every
    // region's wake-up became a futex call, and a 10-step demo request took 65 ms on 2 threads
    // instead of 23 ms (37 ms on 1 thread).
    auto kind = duet::cli::resolve_backend(a.backend);
    if (!kind) {
      std::fprintf(stderr, "duet serve: %s\n", kind.status().to_string().c_str());
      return 1;
    }
    duet::LoadOptions lo;
    lo.precision = *precision;
    lo.backend = *kind;
    duet::Result<std::unique_ptr<duet::Denoiser>> model(duet::internal_error("not loaded"));
    std::thread([&] { model = duet::load_denoiser(a.model, a.threads, lo); }).join();
    if (!model) {
      std::fprintf(stderr, "duet serve: %s\n", model.status().to_string().c_str());
      return 1;
    }
    duet::PipelineEngineOptions po;
    po.prompt_cache_bytes = static_cast<int64_t>(a.prompt_cache_mb * 1048576.0);
    po.threads = a.threads;
    po.max_memory_bytes = static_cast<int64_t>(a.max_memory_mb * 1048576.0);
    if (auto cfg = duet::load_config(a.model + "/config.json"); cfg.is_ok()) {
      // One encoded text: tokens x (text width + per-layer K/V for the backbone's cross-attention).
      po.bytes_per_prompt_row = cfg->text.max_length *
                                (cfg->text.width + 2 * cfg->backbone.width * cfg->backbone.depth) *
                                static_cast<int64_t>(sizeof(float));
    }
    engine = duet::make_pipeline_engine(std::move(model).value(), po);
  }
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
      sub.add_option("--model", a->model, "model directory (config.json + model.safetensors)");
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
      sub.add_option("--threads", a->threads,
                     "model compute threads (0 = the CPUs other processes leave free at start-up)")
          ->capture_default_str();
      duet::cli::add_precision_option(sub, &a->precision);
      duet::cli::add_backend_option(sub, &a->backend);
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
      sub.add_option("--prompt-cache-mb", a->prompt_cache_mb,
                     "prompt cache size (MiB): an LRU of encoded single prompts (0 = none)")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--max-memory", a->max_memory_mb,
                     "cap (MiB) on the model's buffers per denoiser batch; larger requests get "
                     "413 up front (0 = no cap)")
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
      sub.add_flag("--fake-engine", a->fake,
                   "serve a deterministic fake engine instead of a model (tests, load tests)");
      sub.add_option("--fake-step-ms", a->fake_step_ms, "fake engine: ms per denoising step")
          ->capture_default_str();
      return [a]() { return run_serve(*a); };
    });

}  // namespace
