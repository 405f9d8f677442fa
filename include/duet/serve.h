// `duet serve`: an HTTP server for an ImageEngine (see docs/serving.md for the API).
//
//   auto engine = make_fake_engine();
//   ServeOptions o;  o.port = 0;                      // 0 = an ephemeral port
//   DUET_ASSIGN_OR_RETURN(auto server, Server::start(std::move(engine), o));
//   ... server->port() ...
//   server->shutdown(std::chrono::seconds(30));       // drain, then stop
//
// Threads: HTTP worker threads only parse, validate and format; one engine thread owns the
// engine and runs batches of compatible queued jobs; one housekeeping thread enforces timeouts
// and job expiry. The HTTP library stays out of this header.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "duet/serve_engine.h"
#include "duet/status.h"

namespace duet {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;     // 0 = ephemeral
  int max_queue = 64;  // queued (not yet running) jobs; more -> 429
  int max_batch = 8;   // images per denoiser batch (before guidance doubling)
  // true: queued compatible requests join a running batch between model calls and each request
  // leaves it as soon as it is done. false (default, faster at saturation on CPUs: see
  // docs/serving.md): a batch runs to its end before the next one starts.
  bool continuous_batching = false;
  double timeout_s = 300;     // per request, queue + run; then the job fails (504)
  std::string api_key;        // empty = no authentication
  int http_threads = 64;      // HTTP worker threads (blocking requests hold one each)
  double job_ttl_s = 600;     // finished async jobs are kept this long, then 410
  size_t max_body = 1 << 20;  // request body limit (413)
  bool log_requests = false;  // one line per request on stderr
  // Slow and idle clients (docs/robustness.md). Each connection holds an HTTP worker while it
  // delivers a request: one socket read may wait read_timeout_s, and the whole request (headers
  // and body, timed from the connection's accept or its previous response) must arrive within
  // request_deadline_s, or the server answers 408 and closes it (0 = no deadline). Idle
  // keep-alive connections are closed after keep_alive_s; one connection serves at most
  // keep_alive_max requests.
  double read_timeout_s = 10;
  double request_deadline_s = 20;
  int keep_alive_s = 5;
  int keep_alive_max = 100;
};

// True when this build links cpp-httplib (the server is available).
bool serve_available();

class Server {
 public:
  // Binds, starts the engine and HTTP threads, returns once the port is listening.
  static Result<std::unique_ptr<Server>> start(std::unique_ptr<ImageEngine> engine,
                                               const ServeOptions& options);
  ~Server();  // shutdown(0) if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int port() const;
  // Stops accepting new work (503, /readyz fails), lets queued and running jobs finish until
  // `deadline`, cancels what is left, then stops the HTTP listener and joins every thread.
  // Returns the number of jobs that had to be cancelled. Idempotent.
  int shutdown(std::chrono::milliseconds deadline);
  // Blocks until shutdown() completes (from another thread or a signal handler's helper).
  void wait();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace duet
