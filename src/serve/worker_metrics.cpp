#include "serve/worker_metrics.h"

#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
#include <httplib.h>
#endif

#include <thread>

namespace duet::serve {

std::string WorkerCounters::render(JobManager& jobs, const ImageEngine& engine) {
  std::string out = local.render(jobs.gauges(), engine.stats());
  auto counter = [&](const char* name, const char* help, uint64_t v, const char* type) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
           name + " " + std::to_string(v) + "\n";
  };
  counter("duet_worker_claimed_total", "jobs this worker took from the broker", claimed.load(),
          "counter");
  counter("duet_worker_reclaimed_total", "of those, taken over from a silent worker",
          reclaimed.load(), "counter");
  counter("duet_worker_fenced_total", "results dropped because another attempt owned the job",
          fenced.load(), "counter");
  counter("duet_worker_failed_attempts_total", "attempts that failed and were queued again",
          failed_attempts.load(), "counter");
  counter("duet_worker_batches_total", "batches run", batches.load(), "counter");
  counter("duet_worker_broker_up", "1 while the broker answers", broker_up.load(), "gauge");
  return out;
}

#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
struct WorkerMetricsServer::Impl {
  httplib::Server http;
  std::thread listener;
  int port = 0;
};

Result<std::unique_ptr<WorkerMetricsServer>> WorkerMetricsServer::start(const std::string& host,
                                                                        int port,
                                                                        WorkerCounters& counters,
                                                                        JobManager& jobs,
                                                                        const ImageEngine& engine) {
  auto impl = std::make_unique<Impl>();
  impl->http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  impl->http.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(counters.render(jobs, engine), "text/plain; version=0.0.4; charset=utf-8");
  });
  impl->http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  if (port == 0) {
    impl->port = impl->http.bind_to_any_port(host);
    if (impl->port <= 0) return io_error("--metrics-port: cannot bind to " + host + " (any port)");
  } else {
    if (!impl->http.bind_to_port(host, port))
      return io_error("--metrics-port: cannot bind to " + host + ":" + std::to_string(port));
    impl->port = port;
  }
  Impl* raw = impl.get();
  impl->listener = std::thread([raw] { raw->http.listen_after_bind(); });
  for (int i = 0; i < 500 && !impl->http.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return std::unique_ptr<WorkerMetricsServer>(new WorkerMetricsServer(std::move(impl)));
}

WorkerMetricsServer::~WorkerMetricsServer() {
  impl_->http.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}
#else
struct WorkerMetricsServer::Impl {
  int port = 0;
};
Result<std::unique_ptr<WorkerMetricsServer>> WorkerMetricsServer::start(const std::string&, int,
                                                                        WorkerCounters&,
                                                                        JobManager&,
                                                                        const ImageEngine&) {
  return unimplemented("--metrics-port needs cpp-httplib");
}
WorkerMetricsServer::~WorkerMetricsServer() = default;
#endif

WorkerMetricsServer::WorkerMetricsServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
int WorkerMetricsServer::port() const { return impl_->port; }

}  // namespace duet::serve
