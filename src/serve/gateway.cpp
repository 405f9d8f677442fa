// duet::Gateway: the HTTP API of `duet serve` over a Redis broker (docs/scale-out.md). It holds
// no model and no job state of its own: requests are validated against the model description
// the workers publish, written to the model's stream by one atomic script (with the backlog
// limit), and answered from the job hash, so any gateway answers any job and a restarted one
// loses nothing. Every broker call has a deadline: a broker that is down gives 503 + the reason.
#include "duet/fleet.h"

#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <thread>

#include "serve/api.h"
#include "serve/broker_redis.h"
#include "serve/fleet_protocol.h"
#include "serve/metrics.h"
#include "serve/openai_edits.h"
#include "serve/webui.h"
#endif

namespace duet {

#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT)
struct Gateway::Impl {};
Result<std::unique_ptr<Gateway>> Gateway::start(const GatewayOptions&) {
  return unimplemented("this duet build does not link cpp-httplib, so it has no server");
}
Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gateway::~Gateway() = default;
int Gateway::port() const { return 0; }
void Gateway::shutdown() {}
#else

namespace {

using serve::ApiError;
using serve::Reply;
namespace fleet = serve::fleet;

void send_json(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void send_error(httplib::Response& res, int status, std::string message, std::string param = "",
                std::string type = "invalid_request_error") {
  ApiError e;
  e.status = status;
  e.message = std::move(message);
  e.param = std::move(param);
  e.type = std::move(type);
  send_json(res, status, serve::error_json(e));
}

bool same_key(const std::string& a, const std::string& b) {
  unsigned char d = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) d |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return d == 0 && !b.empty();
}

// Validation only: the model description the workers published (their engines check again).
class DescribedEngine : public ImageEngine {
 public:
  explicit DescribedEngine(EngineInfo info) : info_(std::move(info)) {}
  const EngineInfo& info() const override { return info_; }
  Status validate(const ImageRequest&) const override { return Status::ok(); }
  std::vector<Result<ImageOutput>> run_batch(const std::vector<EngineJob>& jobs) override {
    return std::vector<Result<ImageOutput>>(jobs.size(), internal_error("gateway has no model"));
  }
  EngineStats stats() const override { return {}; }

 private:
  EngineInfo info_;
};

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

}  // namespace

struct Gateway::Impl {
  GatewayOptions opts;
  fleet::Keys keys;
  std::unique_ptr<serve::RedisPool> pool;
  serve::Metrics metrics;
  httplib::Server http;
  std::thread listener;
  int port = 0;
  std::atomic<uint64_t> rejected{0}, broker_errors{0};

  std::mutex mu;  // the cached model description
  std::shared_ptr<DescribedEngine> engine;
  std::string model;
  serve::Clock::time_point fetched{};

  Result<Reply> cmd(const std::vector<std::string>& args) {
    auto r = pool->command(args);
    if (!r && r.status().code() == StatusCode::kIoError) broker_errors.fetch_add(1);
    return r;
  }
  // 503 with the broker's reason; true when `r` failed.
  bool broker_failed(const Result<Reply>& r, httplib::Response& res) {
    if (r.is_ok()) return false;
    res.set_header("Retry-After", "1");
    send_error(res, 503, r.status().message(), "", "server_error");
    return true;
  }
  // The model description (refreshed every 2 s), or null with 503 sent.
  std::shared_ptr<DescribedEngine> described(httplib::Response& res);
  std::string new_id();
  void submit(const ImageRequest& r, bool sync, httplib::Response& res);
  void wait_and_answer(const std::string& id, httplib::Response& res);
  std::shared_ptr<serve::Job> load(const std::string& id, httplib::Response& res, Reply* hash);
  void install_routes();
  std::string render_metrics();
};

std::shared_ptr<DescribedEngine> Gateway::Impl::described(httplib::Response& res) {
  {
    std::lock_guard<std::mutex> lock(mu);
    if (engine && serve::Clock::now() - fetched < std::chrono::seconds(2)) return engine;
  }
  std::string name = opts.model;
  if (name.empty()) {
    auto m = cmd({"SMEMBERS", keys.models()});
    if (broker_failed(m, res)) return nullptr;
    std::vector<std::string> names;
    for (const auto& e : m->elements) names.push_back(e.str);
    std::sort(names.begin(), names.end());
    if (names.empty()) {
      res.set_header("Retry-After", "5");
      send_error(res, 503, "no worker has published a model yet (start `duet worker`)", "",
                 "server_error");
      return nullptr;
    }
    name = names.front();
  }
  auto d = cmd({"GET", keys.model(name)});
  if (broker_failed(d, res)) return nullptr;
  if (d->nil()) {
    res.set_header("Retry-After", "5");
    send_error(res, 503, "no worker for model " + name + " is alive (its description expired)", "",
               "server_error");
    return nullptr;
  }
  auto info = fleet::info_from_json(d->str);
  if (!info) {
    send_error(res, 500, info.status().message(), "", "server_error");
    return nullptr;
  }
  std::lock_guard<std::mutex> lock(mu);
  engine = std::make_shared<DescribedEngine>(std::move(info).value());
  model = name;
  fetched = serve::Clock::now();
  return engine;
}

std::string Gateway::Impl::new_id() {
  static std::mutex id_mu;
  static std::mt19937_64 rng(std::random_device{}() ^ (uint64_t(std::random_device{}()) << 32));
  std::lock_guard<std::mutex> lock(id_mu);
  char buf[40];
  std::snprintf(buf, sizeof buf, "job_%016llx%06llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng() & 0xffffff));
  return buf;
}

void Gateway::Impl::submit(const ImageRequest& r, bool sync, httplib::Response& res) {
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu);
    name = model;
  }
  const std::string id = new_id();
  const int64_t now = fleet::now_ms();
  const double pending_ttl = std::max(3600.0, 10 * opts.serve.timeout_s) + opts.serve.job_ttl_s;
  std::vector<std::string> args = {"EVAL",
                                   fleet::kSubmitScript,
                                   "4",
                                   keys.job(id),
                                   keys.stream(name),
                                   keys.backlog(name),
                                   keys.stats(name),
                                   std::to_string(opts.serve.max_queue),
                                   std::to_string(static_cast<int64_t>(pending_ttl)),
                                   id};
  for (const std::string& kv :
       {std::string("model"), name, std::string("request"), fleet::request_to_json(r),
        std::string("created_ms"), std::to_string(now), std::string("created_unix"),
        std::to_string(now / 1000), std::string("state"), std::string("queued"),
        std::string("step"), std::string("0"), std::string("attempt"), std::string("0"),
        std::string("sync"), std::string(sync ? "1" : "0")})
    args.push_back(kv);
  auto s = cmd(args);
  if (broker_failed(s, res)) return;
  const int64_t backlog = serve::reply_int(*s);
  if (backlog < 0) {
    rejected.fetch_add(1);
    metrics.count_rejected();
    // Retry-After: the backlog in batches of a typical size, ~1 s each (no global estimate).
    res.set_header("Retry-After", std::to_string(std::clamp<int64_t>(
                                      -backlog / std::max(1, opts.serve.max_batch), 1, 3600)));
    return send_error(res, 429,
                      "the backlog of model " + name + " is full (" +
                          std::to_string(opts.serve.max_queue) + " jobs); retry later",
                      "", "rate_limit_error");
  }
  if (sync) return wait_and_answer(id, res);
  Reply hash;
  auto job = load(id, res, &hash);
  if (!job) return;
  res.set_header("Location", "/v1/jobs/" + id);
  send_json(res, 202, serve::job_json(*job));
}

std::shared_ptr<serve::Job> Gateway::Impl::load(const std::string& id, httplib::Response& res,
                                                Reply* hash) {
  auto h = cmd({"HGETALL", keys.job(id)});
  if (broker_failed(h, res)) return nullptr;
  if (h->elements.empty()) {
    send_error(res, 404, "no job " + id + " (unknown, or expired)", "id", "not_found_error");
    return nullptr;
  }
  *hash = std::move(h).value();
  return fleet::job_from_hash(id, *hash);
}

void Gateway::Impl::wait_and_answer(const std::string& id, httplib::Response& res) {
  const auto deadline =
      serve::Clock::now() +
      std::chrono::milliseconds(static_cast<int64_t>(opts.serve.timeout_s * 1000));
  std::string last_broker_error;
  for (;;) {
    auto st = pool->command({"HGET", keys.job(id), "state"});
    if (st.is_ok()) {
      const std::string s = st->str;
      if (s == "succeeded" || s == "failed" || s == "cancelled" || st->nil()) break;
    } else {
      last_broker_error = st.status().message();
    }
    if (serve::Clock::now() > deadline) {
      if (!last_broker_error.empty())
        return send_error(res, 503, last_broker_error, "", "server_error");
      return send_error(res, 504, "request timed out after " + fmt(opts.serve.timeout_s) + " s", "",
                        "timeout_error");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Reply hash;
  auto job = load(id, res, &hash);
  if (!job) return;
  if (job->state == serve::JobState::kSucceeded) {
    std::vector<std::string> pngs;
    for (int k = 0; k < job->request.n; ++k)
      pngs.push_back(serve::reply_field(hash, "png:" + std::to_string(k)));
    return send_json(res, 200, serve::images_json(*job, pngs));
  }
  if (job->state == serve::JobState::kCancelled)
    return send_error(res, 503, job->error.message(), "", "cancelled");
  send_error(res, 500, job->error.message(), "", "server_error");
}

std::string Gateway::Impl::render_metrics() {
  std::string out = metrics.render(serve::QueueGauges{}, EngineStats{});
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu);
    name = model;
  }
  auto line = [&](const std::string& s) { out += s + "\n"; };
  line("# HELP duet_fleet_broker_up 1 when the broker answered this scrape");
  line("# TYPE duet_fleet_broker_up gauge");
  auto b =
      name.empty() ? Result<Reply>(internal_error("no model")) : cmd({"GET", keys.backlog(name)});
  auto st =
      name.empty() ? Result<Reply>(internal_error("no model")) : cmd({"HGETALL", keys.stats(name)});
  const bool up = cmd({"PING"}).is_ok();
  line(std::string("duet_fleet_broker_up ") + (up ? "1" : "0"));
  line("# HELP duet_fleet_broker_errors_total broker calls that failed (down, timeout)");
  line("# TYPE duet_fleet_broker_errors_total counter");
  line("duet_fleet_broker_errors_total " + std::to_string(broker_errors.load()));
  if (b.is_ok() && st.is_ok()) {
    const std::string m = "{model=\"" + name + "\"}";
    line("# HELP duet_fleet_backlog jobs queued in the model's stream, not yet claimed");
    line("# TYPE duet_fleet_backlog gauge");
    line("duet_fleet_backlog" + m + " " + std::to_string(serve::reply_int(*b)));
    line("# HELP duet_fleet_jobs_total jobs by outcome (all gateways and workers)");
    line("# TYPE duet_fleet_jobs_total counter");
    for (const char* s : {"submitted", "succeeded", "failed", "cancelled"})
      line(std::string("duet_fleet_jobs_total{model=\"") + name + "\",state=\"" + s + "\"} " +
           std::to_string(
               serve::reply_int(Reply{Reply::Type::kString, 0, serve::reply_field(*st, s), {}})));
    line("# HELP duet_fleet_reclaimed_total jobs taken over from a silent worker");
    line("# TYPE duet_fleet_reclaimed_total counter");
    line("duet_fleet_reclaimed_total" + m + " " +
         std::to_string(serve::reply_int(
             Reply{Reply::Type::kString, 0, serve::reply_field(*st, "reclaimed"), {}})));
    line("# HELP duet_fleet_queue_wait_seconds time from submit to a worker's first claim");
    line("# TYPE duet_fleet_queue_wait_seconds summary");
    const std::string sum = serve::reply_field(*st, "queue_wait_sum");
    line("duet_fleet_queue_wait_seconds_sum" + m + " " + (sum.empty() ? "0" : sum));
    line("duet_fleet_queue_wait_seconds_count" + m + " " +
         std::to_string(serve::reply_int(
             Reply{Reply::Type::kString, 0, serve::reply_field(*st, "queue_wait_count"), {}})));
  }
  return out;
}

void Gateway::Impl::install_routes() {
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (opts.serve.api_key.empty() || req.path == "/healthz" || req.path == "/readyz")
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && same_key(auth.substr(7), opts.serve.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "missing or wrong API key (Authorization: Bearer <key>)", "",
               "authentication_error");
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) return send_error(res, 404, "no such route", "", "not_found_error");
    if (res.status == 413) return send_error(res, 413, "request body too large");
    send_error(res, res.status, "HTTP error " + std::to_string(res.status));
  });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    const bool job = req.path.rfind("/v1/jobs/", 0) == 0;
    metrics.count_request(req.method + " " + (job ? std::string("/v1/jobs/{id}") : req.path),
                          res.status);
    if (opts.serve.log_requests)
      std::fprintf(stderr, "gateway: %s %s -> %d\n", req.method.c_str(), req.path.c_str(),
                   res.status);
  });
  using Req = httplib::Request;
  using Res = httplib::Response;
  // The web UI talks only to /v1/models and the JSON /v1/jobs routes below, so the gateway
  // serves it as is; its img2img upload is multipart and gets the 400 of /v1/jobs here.
  http.Get("/", [](const Req&, Res& res) {
    res.set_content(serve::webui_html(), "text/html; charset=utf-8");
  });
  http.Get("/healthz", [](const Req&, Res& res) { send_json(res, 200, R"({"status":"ok"})"); });
  http.Get("/readyz", [this](const Req&, Res& res) {
    if (broker_failed(cmd({"PING"}), res) || !described(res)) return;
    send_json(res, 200, R"({"status":"ready"})");
  });
  http.Get("/metrics", [this](const Req&, Res& res) {
    res.set_content(render_metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/v1/models", [this](const Req&, Res& res) {
    if (auto e = described(res)) send_json(res, 200, serve::models_json(e->info()));
  });
  http.Post("/v1/images/generations", [this](const Req& req, Res& res) {
    auto e = described(res);
    if (!e) return;
    auto parsed = serve::parse_generation(req.body, *e);
    if (auto* err = std::get_if<ApiError>(&parsed))
      return send_json(res, err->status, serve::error_json(*err));
    submit(std::get<serve::ParsedGeneration>(parsed).request, true, res);
  });
  http.Post("/v1/jobs", [this](const Req& req, Res& res) {
    auto e = described(res);
    if (!e) return;
    if (req.is_multipart_form_data())
      return send_error(res, 400, "the gateway takes JSON job bodies (base64 images)", "image");
    auto parsed = serve::parse_job_json(req.body, *e);
    if (auto* err = std::get_if<ApiError>(&parsed))
      return send_json(res, err->status, serve::error_json(*err));
    submit(std::get<serve::ParsedGeneration>(parsed).request, false, res);
  });
  http.Get(R"(/v1/jobs/([A-Za-z0-9_]+))", [this](const Req& req, Res& res) {
    Reply h;
    if (auto job = load(req.matches[1], res, &h)) send_json(res, 200, serve::job_json(*job));
  });
  http.Delete(R"(/v1/jobs/([A-Za-z0-9_]+))", [this](const Req& req, Res& res) {
    const std::string id = req.matches[1];
    std::string name;
    Reply h;
    auto job = load(id, res, &h);
    if (!job) return;
    name = serve::reply_field(h, "model");
    auto c = cmd({"EVAL", fleet::kCancelScript, "3", keys.job(id), keys.backlog(name),
                  keys.stats(name), std::to_string(fleet::now_ms()),
                  std::to_string(static_cast<int64_t>(opts.serve.job_ttl_s)),
                  "cancelled by the client"});
    if (broker_failed(c, res)) return;
    if (serve::reply_int(*c) == 0)
      return send_error(res, 409, "job " + id + " has already finished", "id", "conflict");
    if (auto j = load(id, res, &h)) send_json(res, 200, serve::job_json(*j));
  });
  http.Get(R"(/v1/jobs/([A-Za-z0-9_]+)/images/(\d{1,4})\.png)", [this](const Req& req, Res& res) {
    const std::string id = req.matches[1];
    Reply h;
    auto job = load(id, res, &h);
    if (!job) return;
    if (job->state != serve::JobState::kSucceeded)
      return send_error(res, 409,
                        std::string("job is ") + serve::job_state_name(job->state) +
                            "; images exist once it has succeeded",
                        "id", "conflict");
    const int k = std::stoi(req.matches[2]);
    if (k >= job->request.n)
      return send_error(res, 404, "the job has " + std::to_string(job->request.n) + " images", "k",
                        "not_found_error");
    res.set_header("Content-Disposition",
                   "inline; filename=\"" + id + "-" + std::to_string(k) + ".png\"");
    res.set_content(serve::reply_field(h, "png:" + std::to_string(k)), "image/png");
  });
  http.Get(R"(/v1/jobs/([A-Za-z0-9_]+)/events)", [this](const Req& req, Res& res) {
    const std::string id = req.matches[1];
    Reply h;
    if (!load(id, res, &h)) return;
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    auto last = std::make_shared<std::string>();
    res.set_chunked_content_provider("text/event-stream", [this, id, last](
                                                              size_t, httplib::DataSink& sink) {
      // Polls the job hash (50 ms); a broker outage only delays events.
      for (int i = 0; i < 300; ++i) {
        auto r = pool->command({"HMGET", keys.job(id), "state", "step"});
        if (r.is_ok() && r->elements.size() == 2) {
          const std::string state = r->elements[0].str, now = state + "/" + r->elements[1].str;
          if (state.empty()) return false;  // expired
          if (now != *last) {
            *last = now;
            const bool final = state == "succeeded" || state == "failed" || state == "cancelled";
            auto hr = pool->command({"HGETALL", keys.job(id)});
            if (!hr) break;
            auto job = fleet::job_from_hash(id, *hr);
            std::string msg = final
                                  ? "event: done\ndata: " + serve::job_json(*job) + "\n\n"
                                  : "event: progress\ndata: " + serve::progress_json(*job) + "\n\n";
            if (!sink.write(msg.data(), msg.size())) return false;
            if (final) sink.done();
            return true;
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      const std::string ka = ": keep-alive\n\n";
      return sink.write(ka.data(), ka.size());
    });
  });
}

Result<std::unique_ptr<Gateway>> Gateway::start(const GatewayOptions& options) {
  auto url = serve::parse_broker_url(options.broker);
  if (!url) return url.status();
  if (options.serve.max_queue < 1 || !(options.serve.timeout_s > 0) ||
      !(options.broker_timeout_s > 0))
    return invalid_argument(
        "gateway options: max-queue, timeout and broker timeout must be positive");
  auto impl = std::make_unique<Impl>();
  impl->opts = options;
  impl->keys.prefix = options.prefix;
  impl->pool = std::make_unique<serve::RedisPool>(
      *url, std::chrono::milliseconds(static_cast<int64_t>(options.broker_timeout_s * 1000)));
  if (auto p = impl->pool->command({"PING"}); !p) return p.status();
  const int threads = options.serve.http_threads;
  impl->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl->http.set_payload_max_length(options.serve.max_body);
  impl->http.set_tcp_nodelay(true);
  impl->http.set_keep_alive_timeout(options.serve.keep_alive_s);
  impl->install_routes();
  if (options.serve.port == 0) {
    impl->port = impl->http.bind_to_any_port(options.serve.host);
    if (impl->port <= 0) return io_error("cannot bind to " + options.serve.host + " (any port)");
  } else {
    if (!impl->http.bind_to_port(options.serve.host, options.serve.port))
      return io_error("cannot bind to " + options.serve.host + ":" +
                      std::to_string(options.serve.port));
    impl->port = options.serve.port;
  }
  Impl* raw = impl.get();
  impl->listener = std::thread([raw] { raw->http.listen_after_bind(); });
  for (int i = 0; i < 500 && !impl->http.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gateway::~Gateway() { shutdown(); }
int Gateway::port() const { return impl_->port; }
void Gateway::shutdown() {
  impl_->http.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

#endif

}  // namespace duet
