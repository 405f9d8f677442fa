// Scale-out over Redis Streams (docs/scale-out.md): `duet serve --broker URL` runs a Gateway (the
// HTTP API without a model: jobs go to a per-model stream, job state lives in Redis) and
// `duet worker --broker URL --model DIR` runs run_worker (a consumer in the model's group that
// batches jobs exactly as `duet serve` does and stores the results in Redis).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "duet/serve.h"
#include "duet/serve_engine.h"
#include "duet/status.h"

namespace duet {

struct GatewayOptions {
  ServeOptions serve;           // host, port, max_queue (backlog per model), timeout, TTL, key...
  std::string broker;           // redis://HOST[:PORT][/DB]
  std::string prefix = "duet";  // key prefix (several fleets can share one Redis)
  std::string model;            // the model to serve ("" = the one the workers publish)
  double broker_timeout_s = 1;  // per Redis call; then 503 with the reason
};

class Gateway {
 public:
  // Parses the URL and checks the broker answers (an unreachable broker is an error here, so a
  // mistyped URL fails at start-up), then binds and serves.
  static Result<std::unique_ptr<Gateway>> start(const GatewayOptions& options);
  ~Gateway();
  int port() const;
  void shutdown();  // stops the listener; jobs stay in Redis (any gateway can answer them)

  struct Impl;

 private:
  explicit Gateway(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct WorkerOptions {
  std::string broker;
  std::string prefix = "duet";
  std::string name;   // consumer name ("" = host-pid)
  int max_batch = 8;  // images per denoiser batch (as duet serve)
  bool continuous_batching = false;
  double visibility_timeout_s = 10;  // a job whose worker is silent this long is reclaimed
  int max_attempts = 3;              // then the job ends `failed` with the last reason
  double job_ttl_s = 600;            // results are kept this long in Redis
  double timeout_s = 300;            // per job run on this worker
  double drain_timeout_s = 30;       // on stop: finish the batch, then hand back what is left
  int metrics_port = -1;             // -1 = no metrics endpoint, 0 = any free port
  std::string metrics_host = "127.0.0.1";
  double broker_timeout_s = 2;
};

// Runs until *stop is set (then finishes or hands back the current batch) and returns ok, or an
// error when the broker URL is bad or the broker is unreachable at start. `ready` (may be null)
// is called once it has joined the group, with the metrics port (0 when none).
Status run_worker(ImageEngine& engine, const WorkerOptions& options, const std::atomic<bool>& stop,
                  const std::function<void(int)>& ready = {});

}  // namespace duet
