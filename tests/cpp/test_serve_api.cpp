// API tests of `duet serve` against a real server on 127.0.0.1 (ephemeral port) with the fake
// engine: happy paths, every error status, queue limits, cancellation, disconnects, expiry.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "duet/png.h"
#include "test_serve_util.h"

#ifdef DUET_TEST_HAVE_HTTP

namespace duet::testing {
namespace {

std::string b64decode(const std::string& in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
  };
  std::string out;
  int buf = 0, bits = 0;
  for (char c : in) {
    const int v = val(c);
    if (v < 0) continue;
    buf = (buf << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buf >> bits) & 0xff);
    }
  }
  return out;
}

PngImage decode(const std::string& bytes) {
  auto r = decode_png(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? std::move(r).value() : PngImage{};
}

json wait_final(httplib::Client& c, const std::string& id) {
  for (int i = 0; i < 500; ++i) {
    auto r = c.Get("/v1/jobs/" + id);
    if (!r || r->status != 200) return json();
    json j = parse_or_null(r->body);
    const std::string s = j.value("state", "");
    if (s != "queued" && s != "running") return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return json();
}

std::string submit(httplib::Client& c, const std::string& body) {
  auto r = c.Post("/v1/jobs", body, "application/json");
  if (!r || r->status != 202) {
    ADD_FAILURE() << "submit failed: " << (r ? r->status : -1) << " " << (r ? r->body : "");
    return "";
  }
  return parse_or_null(r->body)["id"];
}

TEST(ServeApi, HealthReadyModelsUiAndMetrics) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  auto h = c->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(c->Get("/readyz")->status, 200);
  auto m = c->Get("/v1/models");
  ASSERT_EQ(m->status, 200);
  json mj = parse_or_null(m->body);
  EXPECT_EQ(mj["data"][0]["id"], "fake-duet");
  EXPECT_EQ(mj["data"][0]["duet"]["size_multiple"], 8);
  auto ui = c->Get("/");
  ASSERT_EQ(ui->status, 200);
  EXPECT_NE(ui->body.find("<form"), std::string::npos);
  EXPECT_EQ(ui->body.find("http://"), std::string::npos) << "the UI must not load external files";
  // httplib's logger counts a request after its response is written: the /healthz line may
  // lag behind the client by a moment on a loaded machine, so poll for it (up to 5 s).
  const std::string healthz = R"(duet_http_requests_total{route="GET /healthz",status="200"} 1)";
  auto met = c->Get("/metrics");
  for (int i = 0; i < 100 && met && met->body.find(healthz) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    met = c->Get("/metrics");
  }
  ASSERT_TRUE(met);
  ASSERT_EQ(met->status, 200);
  for (const char* name :
       {"duet_http_requests_total", "duet_queue_depth", "duet_queue_wait_seconds",
        "duet_run_seconds", "duet_batch_images", "duet_rejected_total", "duet_cancelled_total",
        "duet_prompt_cache_hits_total", "duet_prompt_cache_misses_total",
        "duet_denoiser_evaluations_per_second"})
    EXPECT_NE(met->body.find(name), std::string::npos) << name;
  EXPECT_NE(met->body.find(healthz), std::string::npos) << met->body;
}

TEST(ServeApi, SyncGenerationReturnsPngsWithParameters) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  auto r = c->Post("/v1/images/generations",
                   R"({"prompt":"a red boot","n":2,"size":"32x24","steps":3,"seed":42,)"
                   R"("negative_prompt":"blurry","cfg_scale":5.5,"sampler":"euler",)"
                   R"("response_format":"b64_json"})",
                   "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json j = parse_or_null(r->body);
  ASSERT_EQ(j["data"].size(), 2u);
  EXPECT_EQ(j["duet"]["seeds"], json::array({42, 42}));
  EXPECT_EQ(j["duet"]["state"], "succeeded");
  PngImage img = decode(b64decode(j["data"][1]["b64_json"]));
  EXPECT_EQ(img.width, 32);
  EXPECT_EQ(img.height, 24);
  EXPECT_EQ(img.channels, 3);
  const std::string* params = img.find_text("parameters");
  ASSERT_NE(params, nullptr);
  auto p = parse_parameters(*params);
  ASSERT_TRUE(p.is_ok());
  EXPECT_EQ(p->prompt, "a red boot");
  EXPECT_EQ(p->negative_prompt, "blurry");
  EXPECT_EQ(*p->get("Seed"), "42");
  EXPECT_EQ(*p->get("Sampler"), "euler");
  EXPECT_EQ(*p->get("CFG scale"), "5.5");
  EXPECT_EQ(*p->get("Size"), "32x24");
}

TEST(ServeApi, AsyncJobLifecycleEventsAndImages) {
  FakeEngineOptions f;
  f.step_ms = 10;
  auto s = TestServer::start({}, f);
  ASSERT_TRUE(s);
  auto c = s->client();
  auto r = c->Post("/v1/jobs", gen_body("a coat", 8, 3), "application/json");
  ASSERT_EQ(r->status, 202) << r->body;
  json j = parse_or_null(r->body);
  const std::string id = j["id"];
  EXPECT_EQ(r->get_header_value("Location"), "/v1/jobs/" + id);
  EXPECT_EQ(j["steps"], 8);

  // SSE: progress events with increasing steps, then done.
  std::string stream;
  auto ev =
      s->client()->Get(("/v1/jobs/" + id + "/events").c_str(), [&](const char* data, size_t n) {
        stream.append(data, n);
        return true;
      });
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->status, 200);
  EXPECT_EQ(ev->get_header_value("Content-Type"), "text/event-stream");
  EXPECT_NE(stream.find("event: progress"), std::string::npos) << stream;
  EXPECT_NE(stream.find(R"("step":8)"), std::string::npos) << stream;
  const size_t done = stream.find("event: done\ndata: ");
  ASSERT_NE(done, std::string::npos) << stream;
  json dj = parse_or_null(stream.substr(done + 18, stream.find('\n', done + 18) - done - 18));
  EXPECT_EQ(dj["state"], "succeeded");

  json fin = wait_final(*c, id);
  EXPECT_EQ(fin["state"], "succeeded");
  EXPECT_EQ(fin["step"], 8);
  EXPECT_EQ(fin["seeds"].size(), 3u);
  EXPECT_EQ(fin["images"].size(), 3u);
  EXPECT_GE(fin["timings"]["run_s"].get<double>(), 0.0);
  auto png = c->Get("/v1/jobs/" + id + "/images/2.png");
  ASSERT_EQ(png->status, 200);
  EXPECT_EQ(png->get_header_value("Content-Type"), "image/png");
  PngImage img = decode(png->body);
  EXPECT_EQ(img.width, 16);
  ASSERT_NE(img.find_text("parameters"), nullptr);
  EXPECT_NE(img.find_text("parameters")->find("Batch pos: 2"), std::string::npos);
  EXPECT_EQ(c->Get("/v1/jobs/" + id + "/images/3.png")->status, 404);
  EXPECT_EQ(c->Delete("/v1/jobs/" + id)->status, 409);  // already finished
  EXPECT_FALSE(fin.contains("cache"));  // uncached requests keep their shape

  // A cached request: the job echoes the canonical spec and reports what the cache skipped
  // (the fake engine has no backbone: zero reused calls), and /metrics has the counters.
  auto rc = c->Post("/v1/jobs", gen_body("a coat", 4, 1, R"(,"cache":"on")"), "application/json");
  ASSERT_EQ(rc->status, 202) << rc->body;
  json cj = wait_final(*c, parse_or_null(rc->body)["id"]);
  EXPECT_EQ(cj["state"], "succeeded");
  EXPECT_EQ(cj["request"]["cache"], cache_spec_string(*parse_cache_spec("on")));
  ASSERT_TRUE(cj.contains("cache")) << cj.dump();
  EXPECT_EQ(cj["cache"]["reused_calls"], 0);
  const std::string metrics = c->Get("/metrics")->body;
  for (const char* m : {"duet_backbone_blocks_run_total", "duet_backbone_blocks_uncached_total",
                        "duet_cache_reused_calls_total"})
    EXPECT_NE(metrics.find(m), std::string::npos) << m;
}

TEST(ServeApi, ValidationErrorsName400Fields) {
  auto s = TestServer::start();
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::pair<std::string, std::string> cases[] = {
      {"not json", ""},
      {"[1,2]", ""},
      {R"({"n":1})", "prompt"},
      {R"({"prompt":""})", "prompt"},
      {R"({"prompt":5})", "prompt"},
      {R"({"prompt":"x","size":"30x32"})", "size"},
      {R"({"prompt":"x","size":"big"})", "size"},
      {R"({"prompt":"x","size":"8192x8"})", "size"},
      {R"({"prompt":"x","steps":0})", "steps"},
      {R"({"prompt":"x","steps":100000})", "steps"},
      {R"({"prompt":"x","steps":2.5})", "steps"},
      {R"({"prompt":"x","n":0})", "n"},
      {R"({"prompt":"x","n":65})", "n"},
      {R"({"prompt":"x","sampler":"warp"})", "sampler"},
      {R"({"prompt":"x","cfg_scale":-1})", "cfg_scale"},
      {R"({"prompt":"x","cfg_scale":"high"})", "cfg_scale"},
      {R"({"prompt":"x","seed":"abc"})", "seed"},
      {R"({"prompt":"x","refine_every":-2})", "refine_every"},
      {R"({"prompt":"x","response_format":"url"})", "response_format"},
      {R"({"prompt":"x","stepz":3})", "stepz"},
      {R"({"prompt":"x","cfg_interval":[3,1]})", "cfg_interval"},
      {R"({"prompt":"x","cfg_interval":[-1,1]})", "cfg_interval"},
      {R"({"prompt":"x","cfg_interval":"0.3,5"})", "cfg_interval"},
      {R"({"prompt":"x","cfg_interval":[1]})", "cfg_interval"},
      {R"({"prompt":"x","cfg_scale":1,"cfg_interval":[0.3,5]})", "cfg_interval"},
      {R"({"prompt":"x","cache":5})", "cache"},
      {R"({"prompt":"x","cache":"fast"})", "cache"},
      {R"({"prompt":"x","cache":"step:0"})", "cache"},
      {R"({"prompt":"x","cache":"step:nan"})", "cache"},
      {R"({"prompt":"x","cache":"step:0.1,0.5,0.2"})", "cache"},
      {R"({"prompt":"x","cache":"block:0,0,0.1"})", "cache"},
      {R"({"prompt":"x","cache":"block:1,-1,0.1"})", "cache"},
      {R"({"prompt":"x","cache":"block:1,1"})", "cache"},
  };
  for (const char* route : {"/v1/images/generations", "/v1/jobs"}) {
    for (const auto& [body, field] : cases) {
      auto r = c->Post(route, body, "application/json");
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 400) << route << " " << body;
      json j = parse_or_null(r->body);
      ASSERT_TRUE(j.contains("error")) << r->body;
      EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
      if (field.empty())
        EXPECT_TRUE(j["error"]["param"].is_null()) << body;
      else
        EXPECT_EQ(j["error"]["param"], field) << body << " -> " << r->body;
    }
  }
}

TEST(ServeApi, NotFoundGoneTooLargeAndAuth) {
  ServeOptions o;
  o.max_body = 256;
  o.api_key = "s3cret";
  o.job_ttl_s = 0.2;
  auto s = TestServer::start(o);
  ASSERT_TRUE(s);
  auto c = s->client();
  // Auth: everything but /healthz, /readyz (and the static UI page) needs the key.
  EXPECT_EQ(c->Get("/healthz")->status, 200);
  EXPECT_EQ(c->Get("/readyz")->status, 200);
  auto unauth = c->Get("/v1/models");
  EXPECT_EQ(unauth->status, 401);
  EXPECT_EQ(unauth->get_header_value("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(c->Get("/metrics")->status, 401);
  EXPECT_EQ(c->Post("/v1/jobs", gen_body("x"), "application/json")->status, 401);
  c->set_bearer_token_auth("wrong");
  EXPECT_EQ(c->Get("/v1/models")->status, 401);
  c->set_bearer_token_auth("s3cret");
  EXPECT_EQ(c->Get("/v1/models")->status, 200);

  EXPECT_EQ(c->Get("/v1/jobs/job_doesnotexist")->status, 404);
  EXPECT_EQ(c->Delete("/v1/jobs/job_doesnotexist")->status, 404);
  EXPECT_EQ(c->Get("/nowhere")->status, 404);
  const std::string big = R"({"prompt":")" + std::string(1000, 'a') + R"("})";
  auto tl = c->Post("/v1/jobs", big, "application/json");
  EXPECT_EQ(tl->status, 413);

  // TTL: a finished job answers 200, then 410 once expired; its images too.
  const std::string id = submit(*c, gen_body("short", 2));
  EXPECT_EQ(wait_final(*c, id)["state"], "succeeded");
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  auto gone = c->Get("/v1/jobs/" + id);
  EXPECT_EQ(gone->status, 410) << gone->body;
  EXPECT_EQ(c->Get("/v1/jobs/" + id + "/images/0.png")->status, 410);
}

TEST(ServeApi, FullQueueAnswers429WithRetryAfter) {
  ServeOptions o;
  o.max_queue = 2;
  o.max_batch = 1;
  FakeEngineOptions f;
  f.step_ms = 30;
  auto s = TestServer::start(o, f);
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string running = submit(*c, gen_body("a", 50));
  // Wait until the first job left the queue (running), then fill the queue.
  for (int i = 0; i < 200; ++i) {
    if (parse_or_null(c->Get("/v1/jobs/" + running)->body)["state"] == "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::string q1 = submit(*c, gen_body("b", 50));
  const std::string q2 = submit(*c, gen_body("c", 50));
  auto r = c->Post("/v1/jobs", gen_body("d", 50), "application/json");
  ASSERT_EQ(r->status, 429) << r->body;
  EXPECT_GE(std::stoi(r->get_header_value("Retry-After")), 1);
  auto r2 = c->Post("/v1/images/generations", gen_body("e", 50), "application/json");
  EXPECT_EQ(r2->status, 429);
  auto met = c->Get("/metrics")->body;
  EXPECT_EQ(metric_value(met, "duet_rejected_total"), 2);
  EXPECT_EQ(metric_value(met, "duet_queue_depth"), 2);
  for (const auto& id : {running, q1, q2}) c->Delete("/v1/jobs/" + id);
}

TEST(ServeApi, CancelQueuedAndRunningJobs) {
  ServeOptions o;
  o.max_batch = 1;
  FakeEngineOptions f;
  f.step_ms = 20;
  auto s = TestServer::start(o, f);
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string running = submit(*c, gen_body("long", 200));
  const std::string queued = submit(*c, gen_body("other", 200, 1, R"(,"cfg_scale":2)"));
  for (int i = 0; i < 200; ++i) {
    if (parse_or_null(c->Get("/v1/jobs/" + running)->body)["step"].get<int>() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto dq = c->Delete("/v1/jobs/" + queued);
  ASSERT_EQ(dq->status, 200);
  EXPECT_EQ(parse_or_null(dq->body)["state"], "cancelled");
  auto dr = c->Delete("/v1/jobs/" + running);
  ASSERT_EQ(dr->status, 200);
  json fin = wait_final(*c, running);
  EXPECT_EQ(fin["state"], "cancelled");
  EXPECT_LT(fin["step"].get<int>(), 200);
  EXPECT_EQ(fin["error"]["message"], "cancelled by the client");
  EXPECT_EQ(c->Get("/v1/jobs/" + running + "/images/0.png")->status, 409);
  EXPECT_EQ(metric_value(c->Get("/metrics")->body, "duet_cancelled_total"), 2);
}

TEST(ServeApi, ClientDisconnectCancelsItsWork) {
  FakeEngineOptions f;
  f.step_ms = 20;
  auto s = TestServer::start({}, f);
  ASSERT_TRUE(s);
  {
    auto impatient = s->client(/*read_timeout_s=*/1);
    auto r = impatient->Post("/v1/images/generations", gen_body("slow", 500), "application/json");
    EXPECT_FALSE(r);  // the client gave up (read timeout) and closed the connection
  }
  auto c = s->client();
  double cancelled = 0;
  for (int i = 0; i < 100 && cancelled < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    cancelled = metric_value(c->Get("/metrics")->body, "duet_cancelled_total");
  }
  EXPECT_EQ(cancelled, 1);
  const std::string met = c->Get("/metrics")->body;
  EXPECT_NE(met.find(R"(duet_jobs_finished_total{state="cancelled"} 1)"), std::string::npos);
  EXPECT_EQ(metric_value(met, "duet_jobs_running"), 0);
}

TEST(ServeApi, TimeoutFailsTheRequest) {
  ServeOptions o;
  o.timeout_s = 0.3;
  FakeEngineOptions f;
  f.step_ms = 20;
  auto s = TestServer::start(o, f);
  ASSERT_TRUE(s);
  auto c = s->client();
  auto r = c->Post("/v1/images/generations", gen_body("slow", 500), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 504) << r->body;
  const std::string id = submit(*c, gen_body("slow too", 500));
  json fin = wait_final(*c, id);
  EXPECT_EQ(fin["state"], "failed");
  EXPECT_NE(fin["error"]["message"].get<std::string>().find("timed out"), std::string::npos);
  EXPECT_EQ(metric_value(c->Get("/metrics")->body, "duet_timeouts_total"), 2);
}

TEST(ServeApi, EngineErrorFailsOnlyItsRequest) {
  FakeEngineOptions f;
  f.step_ms = 5;
  ServeOptions o;
  o.max_batch = 8;
  auto s = TestServer::start(o, f);
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string blocker = submit(*c, gen_body("blocker", 30, 1, R"(,"cfg_scale":9)"));
  const std::string bad = submit(*c, gen_body("boom [[fail]]", 4));
  const std::string good = submit(*c, gen_body("fine", 4));
  EXPECT_EQ(wait_final(*c, bad)["state"], "failed");
  EXPECT_EQ(wait_final(*c, good)["state"], "succeeded");
  EXPECT_EQ(wait_final(*c, blocker)["state"], "succeeded");
  auto r = c->Post("/v1/images/generations", gen_body("sync [[fail]]", 2), "application/json");
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(parse_or_null(r->body)["error"]["message"].get<std::string>().find("injected"),
            std::string::npos);
}

// Requests that share a batch get exactly the images they get alone.
TEST(ServeApi, BatchedRequestsMatchSoloRequests) {
  FakeEngineOptions f;
  f.step_ms = 5;
  ServeOptions o;
  o.max_batch = 8;
  auto s = TestServer::start(o, f);
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string bodies[] = {
      gen_body("a dress", 6, 2, R"(,"cfg_scale":3)"),
      gen_body("a sneaker", 6, 1, R"(,"seed":99,"negative_prompt":"dark")"),
      gen_body("a bag", 6, 3, R"(,"cfg_scale":1)"),
  };
  auto images_of = [&](const std::string& id) {
    std::vector<std::string> out;
    json j = wait_final(*c, id);
    EXPECT_EQ(j["state"], "succeeded") << j.dump();
    for (const auto& url : j["images"]) out.push_back(c->Get(url.get<std::string>())->body);
    return out;
  };
  std::vector<std::vector<std::string>> solo;
  for (const auto& b : bodies) solo.push_back(images_of(submit(*c, b)));
  // A long job of another shape holds the engine while the three queue up together.
  const std::string blocker = submit(*c, gen_body("blocker", 40, 1, R"(,"size":"8x8")"));
  std::vector<std::string> ids;
  for (const auto& b : bodies) ids.push_back(submit(*c, b));
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(images_of(ids[i]), solo[i]) << i;
  images_of(blocker);
  const std::string met = c->Get("/metrics")->body;
  // One batch held all three requests (6 images).
  EXPECT_NE(met.find("duet_batch_requests_bucket{le=\"2\"} 4"), std::string::npos) << met;
  EXPECT_NE(met.find("duet_batch_images_bucket{le=\"4\"} 4"), std::string::npos) << met;
  EXPECT_GE(metric_value(met, "duet_prompt_cache_hits_total"), 3);
}

// Continuous batching (the default): a compatible request queued behind a running batch joins it
// between steps, gets the images it gets alone and finishes on its own schedule. Static
// batching: it waits until the running batch has ended.
TEST(ServeApi, QueuedRequestsJoinTheRunningBatch) {
  for (const bool continuous : {true, false}) {
    SCOPED_TRACE(continuous ? "continuous" : "static");
    FakeEngineOptions f;
    f.step_ms = 5;
    ServeOptions o;
    o.max_batch = 8;
    o.continuous_batching = continuous;
    auto s = TestServer::start(o, f);
    ASSERT_TRUE(s);
    auto c = s->client();
    auto state_of = [&](const std::string& id) {
      return parse_or_null(c->Get("/v1/jobs/" + id)->body).value("state", "");
    };
    const std::string joiner = gen_body("a joiner", 200, 2, R"(,"seed":3)");
    json solo = wait_final(*c, submit(*c, joiner));
    ASSERT_EQ(solo["state"], "succeeded") << solo.dump();
    // A long job of the same shape (same steps and size) is running...
    const std::string running = submit(*c, gen_body("a long one", 200));
    for (int i = 0;
         i < 500 && parse_or_null(c->Get("/v1/jobs/" + running)->body).value("step", 0) < 3; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    const std::string id = submit(*c, joiner);
    // ...and the new one starts while it runs (continuous) or stays queued (static).
    std::string seen = "queued";
    for (int i = 0; i < 40 && seen == "queued"; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      seen = state_of(id);
    }
    EXPECT_EQ(state_of(running), "running");
    EXPECT_EQ(seen, continuous ? "running" : "queued");
    ASSERT_EQ(c->Delete("/v1/jobs/" + running)->status, 200);
    json fin = wait_final(*c, id);
    ASSERT_EQ(fin["state"], "succeeded") << fin.dump();
    ASSERT_EQ(fin["images"].size(), solo["images"].size());
    for (size_t k = 0; k < fin["images"].size(); ++k)
      EXPECT_EQ(c->Get(fin["images"][k].get<std::string>())->body,
                c->Get(solo["images"][k].get<std::string>())->body);
    EXPECT_EQ(wait_final(*c, running)["state"], "cancelled");
    // The joiner was observed joining a batch of 2 requests (3 images) only when continuous.
    const std::string met = c->Get("/metrics")->body;
    EXPECT_EQ(met.find("duet_batch_requests_bucket{le=\"1\"} 3") != std::string::npos, !continuous)
        << met;
  }
}

TEST(ServeApi, ShutdownDrainsThenCancelsAtTheDeadline) {
  FakeEngineOptions f;
  f.step_ms = 10;
  ServeOptions o;
  o.max_batch = 1;
  auto s = TestServer::start(o, f);
  ASSERT_TRUE(s);
  auto c = s->client();
  const std::string quick = submit(*c, gen_body("quick", 5));
  const std::string slow = submit(*c, gen_body("slow", 1000, 1, R"(,"cfg_scale":2)"));
  std::thread stopper([&] { s->server->shutdown(std::chrono::milliseconds(3000)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(c->Get("/readyz")->status, 503);
  EXPECT_EQ(c->Post("/v1/jobs", gen_body("late"), "application/json")->status, 503);
  // The in-flight job finishes during the drain (and can still be read).
  std::string state;
  for (int i = 0; i < 250 && state != "succeeded"; ++i) {
    state = parse_or_null(c->Get("/v1/jobs/" + quick)->body)["state"];
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(state, "succeeded");
  stopper.join();
  EXPECT_EQ(s->server->shutdown(std::chrono::milliseconds(0)), 1);  // idempotent: 1 cancelled
  EXPECT_FALSE(c->Get("/healthz"));                                 // listener closed
}

}  // namespace
}  // namespace duet::testing

#else
TEST(ServeApi, SkippedWithoutHttplib) {
  GTEST_SKIP() << "this build does not link cpp-httplib (pkg-config cpp-httplib)";
}
#endif
