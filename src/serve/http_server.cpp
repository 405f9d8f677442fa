// duet::Server: the HTTP edge (cpp-httplib). Handlers parse and validate into ImageRequest,
// hand jobs to JobManager and format answers; they never touch the engine.
//
// Debian's cpp-httplib is a compiled library (libcpp-httplib.so, built with OpenSSL, zlib and
// brotli support): the header's class layouts depend on those macros, so this file is compiled
// only when the build links it through pkg-config (which defines CPPHTTPLIB_OPENSSL_SUPPORT);
// otherwise Server::start reports that this build has no server.
#include "duet/serve.h"

#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <regex>

#include "serve/api.h"
#include "serve/conn_guard.h"
#include "serve/jobs.h"
#include "serve/mcp.h"
#include "serve/metrics.h"
#include "serve/openai_edits.h"
#include "serve/sdapi.h"
#include "serve/sync_run.h"
#include "serve/webui.h"
#endif

namespace duet {

#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT)

bool serve_available() { return false; }
struct Server::Impl {};
Result<std::unique_ptr<Server>> Server::start(std::unique_ptr<ImageEngine>, const ServeOptions&) {
  return unimplemented(
      "this duet build does not link cpp-httplib (pkg-config cpp-httplib), so it has no server");
}
Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;
int Server::port() const { return 0; }
int Server::shutdown(std::chrono::milliseconds) { return 0; }
void Server::wait() {}

#else

bool serve_available() { return true; }

namespace {

using serve::ApiError;
using serve::Job;
using serve::JobManager;
using serve::JobState;

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

// The route label for metrics: the path with ids and indices replaced by placeholders.
std::string route_label(const httplib::Request& req) {
  static const std::regex job_re(R"(^/v1/jobs/[^/]+(/images/[^/]+|/events)?$)");
  std::smatch m;
  std::string path = req.path;
  if (std::regex_match(req.path, m, job_re)) {
    path = "/v1/jobs/{id}";
    if (m[1].matched) path += m[1].str().rfind("/events", 0) == 0 ? "/events" : "/images/{k}.png";
  } else if (path != "/" && path != "/healthz" && path != "/readyz" && path != "/metrics" &&
             path != "/v1/models" && path != "/v1/jobs" && path != "/v1/images/generations" &&
             path != "/v1/images/edits" && path != "/mcp" && path.rfind("/sdapi/v1/", 0) != 0) {
    path = "other";
  }
  return req.method + " " + path;
}

// Is a browser's Origin this server itself or a loopback page (MCP's DNS-rebinding rule)?
bool local_origin(const std::string& origin, const std::string& host) {
  const size_t scheme = origin.find("://");
  if (scheme == std::string::npos) return false;
  const std::string authority = origin.substr(scheme + 3);
  if (authority == host) return true;
  const std::string name =
      authority.substr(0, authority.rfind(':') == std::string::npos || authority.back() == ']'
                              ? authority.size()
                              : authority.rfind(':'));
  return name == "localhost" || name == "127.0.0.1" || name == "[::1]";
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char d = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) d |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return d == 0 && !b.empty();
}

// The connection's socket, found by its addresses (cpp-httplib 0.11 does not expose it), so a
// blocking handler can notice that its client went away.
int find_socket(const httplib::Request& req) {
  DIR* dir = opendir("/proc/self/fd");
  if (!dir) return -1;
  int found = -1;
  while (dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    sockaddr_storage local{}, peer{};
    socklen_t ll = sizeof local, pl = sizeof peer;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    auto port_of = [](const sockaddr_storage& s) {
      if (s.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(s).sin_port);
      if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(s).sin6_port);
      return uint16_t{0};
    };
    if (port_of(local) != req.local_port || port_of(peer) != req.remote_port) continue;
    char host[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in&>(peer).sin_addr, host, sizeof host);
    else
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6&>(peer).sin6_addr, host, sizeof host);
    if (req.remote_addr == host) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(dir);
  return found;
}

bool peer_closed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  char c;
  return (p.revents & POLLIN) && recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

}  // namespace

struct Server::Impl {
  std::unique_ptr<ImageEngine> engine;
  ServeOptions opts;
  serve::Metrics metrics;
  std::unique_ptr<JobManager> jobs;
  httplib::Server http;
  std::unique_ptr<serve::ConnectionGuard> guard;  // the request deadline (slow clients)
  std::thread listener;
  int port = 0;
  std::mutex mu;
  std::condition_variable done_cv;
  bool shutting_down = false, done = false;
  int cancelled = 0;

  void install_routes();
  void submit_or_reject(const std::shared_ptr<Job>& job, httplib::Response& res, bool* ok);
  serve::SyncResult run_sync(const httplib::Request& req, const ImageRequest& r,
                             const std::string& api);
  void generations(const httplib::Request& req, httplib::Response& res);
  void edits(const httplib::Request& req, httplib::Response& res);
  void answer_images(const serve::SyncResult& out, httplib::Response& res);
  void create_job(const httplib::Request& req, httplib::Response& res);
  void sd_generate(const httplib::Request& req, httplib::Response& res, bool img2img);
  void install_sdapi_and_mcp_routes();
  std::atomic<uint64_t> sd_interrupts{0};  // POST /sdapi/v1/interrupt calls
  std::shared_ptr<Job> lookup(const std::string& id, httplib::Response& res);
  void events(const std::shared_ptr<Job>& job, httplib::Response& res);
};

void Server::Impl::submit_or_reject(const std::shared_ptr<Job>& job, httplib::Response& res,
                                    bool* ok) {
  *ok = false;
  switch (jobs->submit(job)) {
    case JobManager::Submit::kOk:
      *ok = true;
      return;
    case JobManager::Submit::kQueueFull:
      res.set_header("Retry-After", std::to_string(jobs->retry_after_s()));
      send_error(res, 429,
                 "the queue is full (" + std::to_string(opts.max_queue) + " jobs); retry later", "",
                 "rate_limit_error");
      return;
    case JobManager::Submit::kDraining:
      send_error(res, 503, "the server is shutting down", "", "server_error");
      return;
  }
}

serve::SyncResult Server::Impl::run_sync(const httplib::Request& req, const ImageRequest& r,
                                         const std::string& api) {
  serve::SyncResult out;
  auto fail = [&out](int status, std::string message, std::string type) {
    out.status = status;
    out.error.status = status;
    out.error.message = std::move(message);
    out.error.type = std::move(type);
    return out;
  };
  auto job = jobs->make_job(r, /*sync=*/true);
  job->api = api;
  switch (jobs->submit(job)) {
    case JobManager::Submit::kOk:
      break;
    case JobManager::Submit::kQueueFull:
      out.retry_after_s = jobs->retry_after_s();
      return fail(429,
                  "the queue is full (" + std::to_string(opts.max_queue) + " jobs); retry later",
                  "rate_limit_error");
    case JobManager::Submit::kDraining:
      return fail(503, "the server is shutting down", "server_error");
  }
  const int fd = find_socket(req);
  bool disconnected = false;
  {
    std::unique_lock<std::mutex> lock(job->mu);
    while (!serve::is_final(job->state)) {
      job->done_cv.wait_for(lock, std::chrono::milliseconds(100));
      if (!disconnected && !serve::is_final(job->state) && peer_closed(fd)) {
        disconnected = true;
        lock.unlock();
        jobs->cancel(job, "client disconnected");
        lock.lock();
      }
    }
  }
  jobs->forget(job->id);
  out.job = job;
  JobState state;
  Status error;
  bool timed_out;
  {
    std::lock_guard<std::mutex> lock(job->mu);
    state = job->state;
    error = job->error;
    timed_out = job->timed_out;
  }
  if (state == JobState::kSucceeded) {
    for (int k = 0; k < job->request.n; ++k) {
      auto png = serve::job_png(*job, k);
      if (!png.is_ok()) return fail(500, png.status().message(), "server_error");
      out.pngs.push_back(std::move(png).value());
    }
    return out;
  }
  if (timed_out) return fail(504, error.message(), "timeout_error");
  if (state == JobState::kCancelled)
    return fail(disconnected ? 499 : 503, error.message(), "cancelled");
  return fail(500, error.message(), "server_error");
}

void Server::Impl::answer_images(const serve::SyncResult& out, httplib::Response& res) {
  if (out.status == 200) return send_json(res, 200, serve::images_json(*out.job, out.pngs));
  if (out.retry_after_s > 0) res.set_header("Retry-After", std::to_string(out.retry_after_s));
  send_json(res, out.status, serve::error_json(out.error));
}

void Server::Impl::generations(const httplib::Request& req, httplib::Response& res) {
  auto parsed = serve::parse_generation(req.body, *engine);
  if (auto* e = std::get_if<ApiError>(&parsed))
    return send_json(res, e->status, serve::error_json(*e));
  answer_images(run_sync(req, std::get<serve::ParsedGeneration>(parsed).request, "openai"), res);
}

// The multipart form as FormParts (cpp-httplib files every part, text fields included).
static std::vector<serve::FormPart> form_parts(const httplib::Request& req) {
  std::vector<serve::FormPart> parts;
  for (const auto& [name, f] : req.files)
    parts.push_back({name, f.filename, f.content_type, f.content});
  return parts;
}

static std::string multipart_needed(const httplib::Request& req) {
  const std::string ct = req.get_header_value("Content-Type");
  return "this route takes multipart/form-data (an 'image' PNG file and text fields), got " +
         (ct.empty() ? std::string("no Content-Type") : "Content-Type " + ct);
}

void Server::Impl::edits(const httplib::Request& req, httplib::Response& res) {
  if (!req.is_multipart_form_data()) return send_error(res, 400, multipart_needed(req), "image");
  auto parsed = serve::parse_edit_form(form_parts(req), *engine);
  if (auto* e = std::get_if<ApiError>(&parsed))
    return send_json(res, e->status, serve::error_json(*e));
  answer_images(run_sync(req, std::get<serve::ParsedGeneration>(parsed).request, "openai"), res);
}

void Server::Impl::create_job(const httplib::Request& req, httplib::Response& res) {
  auto parsed = req.is_multipart_form_data() ? serve::parse_edit_form(form_parts(req), *engine)
                                             : serve::parse_job_json(req.body, *engine);
  if (auto* e = std::get_if<ApiError>(&parsed))
    return send_json(res, e->status, serve::error_json(*e));
  auto job = jobs->make_job(std::get<serve::ParsedGeneration>(parsed).request, /*sync=*/false);
  bool ok = false;
  submit_or_reject(job, res, &ok);
  if (!ok) return;
  res.set_header("Location", "/v1/jobs/" + job->id);
  send_json(res, 202, serve::job_json(*job));
}

// /sdapi/v1/txt2img and img2img: one blocking job per iteration. An interrupt answers with the
// images made until then (as A1111 does); any other failure answers the error.
void Server::Impl::sd_generate(const httplib::Request& req, httplib::Response& res, bool img2img) {
  auto parsed = img2img ? serve::parse_sd_img2img(req.body, *engine)
                        : serve::parse_sd_txt2img(req.body, *engine);
  if (auto* e = std::get_if<ApiError>(&parsed))
    return send_json(res, e->status, serve::error_json(*e));
  serve::SdRequest& sd = std::get<serve::SdRequest>(parsed);
  const uint64_t interrupts = sd_interrupts.load();
  std::vector<serve::SyncResult> done;
  for (const ImageRequest& r : sd.iterations) {
    serve::SyncResult out = run_sync(req, r, "sdapi");
    if (out.status != 200) {
      if (out.error.type == "cancelled" && sd_interrupts.load() != interrupts) {
        sd.ignored.push_back("interrupted: " + std::to_string(done.size()) + " of " +
                             std::to_string(sd.iterations.size()) + " iterations ran");
        break;
      }
      return answer_images(out, res);
    }
    done.push_back(std::move(out));
  }
  if (done.empty()) return send_error(res, 503, "interrupted before any image", "", "cancelled");
  send_json(res, 200, serve::sd_images_json(sd, done, engine->info()));
}

void Server::Impl::install_sdapi_and_mcp_routes() {
  using Req = httplib::Request;
  using Res = httplib::Response;
  auto guarded = [this](std::function<void(const Req&, Res&)> h) {
    return [this, h = std::move(h)](const Req& req, Res& res) {
      if (guard) guard->begin_handler(req.remote_addr, req.remote_port);
      h(req, res);
    };
  };
  http.Post("/sdapi/v1/txt2img",
            guarded([this](const Req& q, Res& r) { sd_generate(q, r, /*img2img=*/false); }));
  http.Post("/sdapi/v1/img2img",
            guarded([this](const Req& q, Res& r) { sd_generate(q, r, /*img2img=*/true); }));
  http.Get("/sdapi/v1/samplers", guarded([this](const Req&, Res& r) {
             send_json(r, 200, serve::sd_samplers_json(engine->info()));
           }));
  http.Get("/sdapi/v1/schedulers",
           guarded([](const Req&, Res& r) { send_json(r, 200, serve::sd_schedulers_json()); }));
  http.Get("/sdapi/v1/sd-models", guarded([this](const Req&, Res& r) {
             send_json(r, 200, serve::sd_models_json(engine->info()));
           }));
  http.Get("/sdapi/v1/options", guarded([this](const Req&, Res& r) {
             send_json(r, 200, serve::sd_options_json(engine->info()));
           }));
  http.Post("/sdapi/v1/options", guarded([this](const Req& q, Res& r) {
              if (auto e = serve::sd_set_options(q.body, engine->info()))
                return send_json(r, e->status, serve::error_json(*e));
              send_json(r, 200, "null");
            }));
  http.Get("/sdapi/v1/progress", guarded([this](const Req&, Res& r) {
             send_json(r, 200, serve::sd_progress_json(jobs->active()));
           }));
  http.Post("/sdapi/v1/interrupt", guarded([this](const Req&, Res& r) {
              sd_interrupts.fetch_add(1);
              for (const auto& job : jobs->active())
                if (job->api == "sdapi")
                  jobs->cancel(job, "interrupted (POST /sdapi/v1/interrupt)");
              send_json(r, 200, "{}");
            }));
  http.Post("/mcp", guarded([this](const Req& q, Res& r) {
              const std::string origin = q.get_header_value("Origin");
              if (!origin.empty() && !local_origin(origin, q.get_header_value("Host")))
                return send_error(r, 403, "cross-origin MCP requests are refused", "Origin",
                                  "permission_error");
              auto run = [this, &q](const ImageRequest& ir, const std::string& api) {
                return run_sync(q, ir, api);
              };
              const serve::McpReply reply = serve::mcp_handle(q.body, *engine, run);
              r.status = reply.status;
              if (!reply.body.empty()) r.set_content(reply.body, "application/json");
            }));
  for (const char* m : {"GET", "DELETE"}) {
    auto h = guarded([](const Req&, Res& r) {
      r.set_header("Allow", "POST");
      send_error(r, 405, "this MCP server answers POST only (no server-initiated stream)", "",
                 "invalid_request_error");
    });
    if (std::string(m) == "GET")
      http.Get("/mcp", h);
    else
      http.Delete("/mcp", h);
  }
}

std::shared_ptr<Job> Server::Impl::lookup(const std::string& id, httplib::Response& res) {
  bool gone = false;
  auto job = jobs->find(id, &gone);
  if (!job) {
    if (gone)
      send_error(res, 410, "job " + id + " has expired", "id", "not_found_error");
    else
      send_error(res, 404, "no job " + id, "id", "not_found_error");
  }
  return job;
}

void Server::Impl::events(const std::shared_ptr<Job>& job, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto last = std::make_shared<uint64_t>(~uint64_t{0});
  res.set_chunked_content_provider(
      "text/event-stream", [job, last](size_t, httplib::DataSink& sink) {
        std::string msg;
        bool final = false;
        {
          std::unique_lock<std::mutex> lock(job->mu);
          job->cv.wait_for(lock, std::chrono::seconds(15), [&] { return job->version != *last; });
          if (job->version == *last) {
            msg = ": keep-alive\n\n";
          } else {
            *last = job->version;
            final = serve::is_final(job->state);
          }
        }
        if (msg.empty()) {
          msg = final ? "event: done\ndata: " + serve::job_json(*job) + "\n\n"
                      : "event: progress\ndata: " + serve::progress_json(*job) + "\n\n";
        }
        if (!sink.write(msg.data(), msg.size())) return false;
        if (final) sink.done();
        return true;
      });
}

void Server::Impl::install_routes() {
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (opts.api_key.empty() || req.path == "/healthz" || req.path == "/readyz" ||
        (req.path == "/" && req.method == "GET"))
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0 && constant_time_equal(auth.substr(7), opts.api_key))
      return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "missing or wrong API key (Authorization: Bearer <key>)", "",
               "authentication_error");
    return httplib::Server::HandlerResponse::Handled;
  });
  http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_error(res, 413, "request body too large");
    else if (res.status == 400 && req.is_multipart_form_data())  // cpp-httplib's form parser
      send_error(res, 400,
                 "the multipart/form-data body is malformed (boundary, part headers or the "
                 "closing boundary)",
                 "multipart");
    else if (res.status == 404)
      send_error(res, 404, "no such route", "", "not_found_error");
    else
      send_error(res, res.status, "HTTP error " + std::to_string(res.status));
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, 500, what, "", "server_error");
      });
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (guard) guard->end_request(req.remote_addr, req.remote_port);
    const std::string route = route_label(req);
    metrics.count_request(route, res.status);
    if (opts.log_requests)
      std::fprintf(stderr, "serve: %s %s -> %d\n", req.method.c_str(), req.path.c_str(),
                   res.status);
  });

  // Every route handler marks its connection busy for the request deadline (ConnectionGuard).
  using Handler = httplib::Server::Handler;
  auto guarded = [this](Handler h) -> Handler {
    return [this, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
      if (guard) guard->begin_handler(req.remote_addr, req.remote_port);
      h(req, res);
    };
  };
  auto get = [&](const std::string& p, Handler h) { http.Get(p, guarded(std::move(h))); };
  auto post = [&](const std::string& p, Handler h) { http.Post(p, guarded(std::move(h))); };
  auto del = [&](const std::string& p, Handler h) { http.Delete(p, guarded(std::move(h))); };

  get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(serve::webui_html(), "text/html; charset=utf-8");
  });
  get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, R"({"status":"ok"})");
  });
  get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    if (jobs->draining()) return send_json(res, 503, R"({"status":"draining"})");
    send_json(res, 200, R"({"status":"ready"})");
  });
  get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(jobs->gauges(), engine->stats()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, serve::models_json(engine->info()));
  });
  post("/v1/images/generations",
       [this](const httplib::Request& req, httplib::Response& res) { generations(req, res); });
  post("/v1/images/edits",
       [this](const httplib::Request& req, httplib::Response& res) { edits(req, res); });
  post("/v1/jobs",
       [this](const httplib::Request& req, httplib::Response& res) { create_job(req, res); });
  install_sdapi_and_mcp_routes();
  get(R"(/v1/jobs/([A-Za-z0-9_]+))", [this](const httplib::Request& req, httplib::Response& res) {
    if (auto job = lookup(req.matches[1], res)) send_json(res, 200, serve::job_json(*job));
  });
  del(R"(/v1/jobs/([A-Za-z0-9_]+))", [this](const httplib::Request& req, httplib::Response& res) {
    auto job = lookup(req.matches[1], res);
    if (!job) return;
    if (!jobs->cancel(job, "cancelled by the client"))
      return send_error(res, 409, "job " + job->id + " has already finished", "id", "conflict");
    send_json(res, 200, serve::job_json(*job));
  });
  get(R"(/v1/jobs/([A-Za-z0-9_]+)/images/(\d{1,4})\.png)",
      [this](const httplib::Request& req, httplib::Response& res) {
        auto job = lookup(req.matches[1], res);
        if (!job) return;
        const int k = std::stoi(req.matches[2]);
        {
          std::lock_guard<std::mutex> lock(job->mu);
          if (job->state != JobState::kSucceeded)
            return send_error(res, 409,
                              std::string("job is ") + serve::job_state_name(job->state) +
                                  "; images exist once it has succeeded",
                              "id", "conflict");
        }
        if (k >= job->request.n)
          return send_error(res, 404, "the job has " + std::to_string(job->request.n) + " images",
                            "k", "not_found_error");
        auto png = serve::job_png(*job, k);
        if (!png.is_ok()) return send_error(res, 500, png.status().message());
        res.set_header("Content-Disposition",
                       "inline; filename=\"" + job->id + "-" + std::to_string(k) + ".png\"");
        res.set_content(*png, "image/png");
      });
  get(R"(/v1/jobs/([A-Za-z0-9_]+)/events)",
      [this](const httplib::Request& req, httplib::Response& res) {
        if (auto job = lookup(req.matches[1], res)) events(job, res);
      });
}

Result<std::unique_ptr<Server>> Server::start(std::unique_ptr<ImageEngine> engine,
                                              const ServeOptions& options) {
  if (!engine) return invalid_argument("no engine");
  if (options.max_queue < 1 || options.max_batch < 1 || options.http_threads < 1 ||
      !(options.timeout_s > 0) || !(options.job_ttl_s >= 0) || options.max_body < 1 ||
      !(options.read_timeout_s > 0) || !(options.request_deadline_s >= 0) ||
      options.keep_alive_s < 1 || options.keep_alive_max < 1)
    return invalid_argument(
        "serve options: max-queue, max-batch, threads, timeout, max-body, read-timeout and "
        "keep-alive must be positive (request-deadline >= 0)");
  auto impl = std::make_unique<Impl>();
  impl->engine = std::move(engine);
  impl->opts = options;
  impl->jobs = std::make_unique<JobManager>(*impl->engine, options, impl->metrics);
  const int threads = options.http_threads;
  impl->http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  impl->http.set_payload_max_length(options.max_body);
  // Responses are written as headers + body: with Nagle's algorithm the body waits for the
  // client's (delayed, up to 40 ms) ACK of the headers on a keep-alive connection. Measured
  // with Python's http.client: 72 ms per 10-step demo request vs 30 ms on fresh connections.
  impl->http.set_tcp_nodelay(true);
  auto usec = [](double s) { return std::chrono::microseconds(static_cast<int64_t>(s * 1e6)); };
  impl->http.set_read_timeout(usec(options.read_timeout_s));
  impl->http.set_write_timeout(30);
  impl->http.set_keep_alive_timeout(options.keep_alive_s);
  impl->http.set_keep_alive_max_count(static_cast<size_t>(options.keep_alive_max));
  impl->install_routes();
  if (options.port == 0) {
    impl->port = impl->http.bind_to_any_port(options.host);
    if (impl->port <= 0) return io_error("cannot bind to " + options.host + " (any port)");
  } else {
    if (!impl->http.bind_to_port(options.host, options.port))
      return io_error("cannot bind to " + options.host + ":" + std::to_string(options.port));
    impl->port = options.port;
  }
  Impl* raw = impl.get();
  impl->guard = std::make_unique<serve::ConnectionGuard>(
      impl->port, options.request_deadline_s, [raw] { raw->metrics.count_slow_close(); });
  impl->listener = std::thread([raw] { raw->http.listen_after_bind(); });
  for (int i = 0; i < 500 && !impl->http.is_running(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() { shutdown(std::chrono::milliseconds(0)); }

int Server::port() const { return impl_->port; }

int Server::shutdown(std::chrono::milliseconds deadline) {
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    if (impl_->shutting_down) {
      impl_->done_cv.wait(lock, [&] { return impl_->done; });
      return impl_->cancelled;
    }
    impl_->shutting_down = true;
  }
  const int cancelled = impl_->jobs->drain(deadline);
  // Give blocked handlers a moment to answer their (now finished) jobs before the listener and
  // the worker pool stop.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  impl_->http.stop();
  if (impl_->listener.joinable()) impl_->listener.join();
  if (impl_->guard) impl_->guard->stop();
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->cancelled = cancelled;
  impl_->done = true;
  impl_->done_cv.notify_all();
  return cancelled;
}

void Server::wait() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->done_cv.wait(lock, [&] { return impl_->done; });
}

#endif

}  // namespace duet
