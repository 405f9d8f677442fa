// Hardening of `duet serve` inputs: request bodies (malformed JSON, wrong types, huge values)
// through parse_generation directly, and over raw TCP sockets against the fake-engine server:
// oversized and lying bodies, garbage request lines, slow clients, many connections. Every case
// must get a 4xx (or a closed connection) and leave the server answering /healthz.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "duet/serve.h"
#include "duet/serve_engine.h"
#include "serve/api.h"
#include "test_serve_util.h"

using duet::serve::ApiError;
using duet::serve::ParsedGeneration;
using duet::testing::TestServer;
using Clock = std::chrono::steady_clock;

namespace {

std::variant<ParsedGeneration, ApiError> parse(const std::string& body) {
  static const auto engine = duet::make_fake_engine();
  return duet::serve::parse_generation(body, *engine);
}

// A raw TCP connection to 127.0.0.1:port (fd < 0 on failure).
struct Conn {
  int fd = -1;
  explicit Conn(int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~Conn() {
    if (fd >= 0) ::close(fd);
  }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  bool send_all(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }
  // Reads until the peer closes, a full response with Content-Length arrived, or the timeout.
  std::string read_response(int timeout_ms) {
    std::string out;
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    char buf[4096];
    while (Clock::now() < end) {
      pollfd p{fd, POLLIN, 0};
      const int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now()).count());
      if (::poll(&p, 1, left > 0 ? left : 0) <= 0) break;
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
      const size_t hdr_end = out.find("\r\n\r\n");
      const size_t cl = out.find("Content-Length: ");
      if (hdr_end != std::string::npos && cl != std::string::npos && cl < hdr_end) {
        const size_t len = std::stoul(out.substr(cl + 16));
        if (out.size() >= hdr_end + 4 + len) break;
      }
    }
    return out;
  }
};

int status_of(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return 0;  // 0 = no response
  return std::atoi(response.c_str() + 9);
}

std::string post(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

// /healthz answers 200 within `timeout_ms` on a fresh connection.
bool healthy(int port, int timeout_ms = 5000) {
  Conn c(port);
  if (c.fd < 0 || !c.send_all("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    return false;
  return status_of(c.read_response(timeout_ms)) == 200;
}

std::unique_ptr<TestServer> start_or_skip(duet::ServeOptions o = {}) {
  if (!duet::serve_available()) return nullptr;
  return TestServer::start(o);
}

}  // namespace

// ---- parse_generation: no network needed ------------------------------------------------------

TEST(HardeningServe, MalformedBodiesAre400WithTheField) {
  const std::string big(20000, 'a');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"{", ""},
      {"\"prompt\"", ""},
      {"null", ""},
      {std::string("{\"prompt\":\"x\xff\"}"), ""},      // invalid UTF-8
      {R"({"prompt":"x","prompt":"y","n":"2"})", "n"},  // duplicate keys: last wins; n typed
      {std::string(100000, '[') + std::string(100000, ']'), ""},  // deep nesting
      {R"({"prompt":["x"]})", "prompt"},
      {R"({"prompt":{"a":1}})", "prompt"},
      {"{\"prompt\":\"" + big + "\"}", "prompt"},
      {R"({"prompt":"x","negative_prompt":7})", "negative_prompt"},
      {R"({"prompt":"x","n":1e300})", "n"},
      {R"({"prompt":"x","n":-1})", "n"},
      {R"({"prompt":"x","n":18446744073709551615})", "n"},
      {R"({"prompt":"x","n":true})", "n"},
      {R"({"prompt":"x","steps":1001})", "steps"},
      {R"({"prompt":"x","steps":9223372036854775807})", "steps"},
      {R"({"prompt":"x","steps":-9223372036854775808})", "steps"},
      {R"({"prompt":"x","size":"99999x99999"})", "size"},
      {R"({"prompt":"x","size":"4096x4096"})", "size"},
      {R"({"prompt":"x","size":"0x0"})", "size"},
      {R"({"prompt":"x","size":"-8x8"})", "size"},
      {R"({"prompt":"x","size":"8x8x8"})", "size"},
      {R"({"prompt":"x","size":"0000000064x64"})", "size"},
      {R"({"prompt":"x","size":64})", "size"},
      {R"({"prompt":"x","width":1e9})", "width"},
      {R"({"prompt":"x","height":-64})", "height"},
      {R"({"prompt":"x","n":64,"size":"2048x2048"})", "n"},  // 2^28 pixels > per-request cap
      {R"({"prompt":"x","cfg_scale":1e999})", ""},  // nlohmann: number overflow = invalid JSON
      {R"({"prompt":"x","cfg_scale":null,"seed":1.5})", "seed"},
      {R"({"prompt":"x","seed":18446744073709551615})", "seed"},
      {R"({"prompt":"x","seed":-2})", "seed"},
      {R"({"prompt":"x","sampler":""})", "sampler"},
      {R"({"prompt":"x","refine_every":1001})", "refine_every"},
      {R"({"prompt":"x","model":[]})", "model"},
      {R"({"prompt":"x","\u0000":1})", "?"},  // unknown field named by a NUL byte
  };
  for (const auto& [body, field] : cases) {
    const std::string label = body.substr(0, 80);
    auto r = parse(body);
    ASSERT_TRUE(std::holds_alternative<ApiError>(r)) << "accepted: " << label;
    const ApiError& e = std::get<ApiError>(r);
    EXPECT_EQ(e.status, 400) << label;
    EXPECT_FALSE(e.message.empty()) << label;
    if (field != "?") {
      EXPECT_EQ(e.param, field) << label << " -> " << e.message;
    }
    EXPECT_FALSE(duet::serve::error_json(e).empty()) << label;  // renders (valid UTF-8)
  }
}

TEST(HardeningServe, BoundaryValuesAreAccepted) {
  for (const char* body :
       {R"({"prompt":"x","n":64,"size":"512x512","steps":1000,"refine_every":1000})",
        R"({"prompt":"x","steps":3.0,"seed":0,"cfg_scale":100})",
        R"({"prompt":"x","seed":9223372036854775807})"}) {
    auto r = parse(body);
    ASSERT_TRUE(std::holds_alternative<ParsedGeneration>(r))
        << body << " -> " << std::get<ApiError>(r).message;
    EXPECT_GE(std::get<ParsedGeneration>(r).request.seed, 0);
  }
}

// Found while writing fuzz/fuzz_serve_request (input:
// fuzz/repro/serve_request-float-seed-2p63.json; the fuzzer reports it as UBSan "runtime
// error: 9.22337e+18 is outside the range of representable values of type 'long'" at
// src/serve/api.cpp:48). A float seed of 2^63 passes the `v > hi` range check (hi = INT64_MAX
// rounds up to 2^63 as a double) and static_cast<int64_t>(v) is undefined behaviour. On x86 it
// yields INT64_MIN, so the request silently gets a *random* seed instead of a 400. GCC's
// -fsanitize=undefined does not include float-cast-overflow, so the ASan/UBSan ctest run does not
// see it. Fixed in get_int() (rejects v >= 2^63).
TEST(HardeningServe, ReproFloatSeedTwoToThe63) {
  for (const char* body :
       {R"({"prompt":"x","seed":9223372036854775808.0})", R"({"prompt":"x","seed":1e19})"}) {
    auto r = parse(body);
    ASSERT_TRUE(std::holds_alternative<ApiError>(r))
        << body << " accepted with seed " << std::get<ParsedGeneration>(r).request.seed;
    EXPECT_EQ(std::get<ApiError>(r).param, "seed");
  }
}

// ---- over the wire ------------------------------------------------------------------------------

TEST(HardeningServe, GarbageAndOversizedRequestsOverTcp) {
  duet::ServeOptions o;
  o.max_body = 4096;
  auto s = start_or_skip(o);
  if (!s) GTEST_SKIP() << "this build has no HTTP server (cpp-httplib not linked)";
  const int port = s->port;
  struct Case {
    const char* label;
    std::string request;
    int lo, hi;  // accepted status range; 0 = the server may also just close
  };
  const std::string huge(o.max_body + 1, 'x');
  const std::vector<Case> cases = {
      {"oversized body", post("/v1/images/generations", "{\"prompt\":\"" + huge + "\"}"), 413, 413},
      {"oversized Content-Length, no body",
       "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n", 0, 499},
      {"negative Content-Length",
       "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}", 0, 499},
      {"malformed JSON", post("/v1/jobs", "{\"prompt\": "), 400, 400},
      {"wrong types", post("/v1/jobs", R"({"prompt":1,"n":"many"})"), 400, 400},
      {"huge n/steps/size", post("/v1/jobs", R"({"prompt":"x","n":100000,"steps":1e9})"), 400, 400},
      {"garbage request line", "\x16\x03\x01\x02\x00 garbage\r\n\r\n", 0, 499},
      {"huge header", "GET /healthz HTTP/1.1\r\nX: " + std::string(100000, 'h') + "\r\n\r\n", 0,
       499},
      {"unknown method", "BREW /v1/jobs HTTP/1.1\r\nHost: x\r\n\r\n", 0, 499},
      {"path traversal", "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 0, 499},
      {"bad chunked body",
       "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, 499},
  };
  for (const Case& c : cases) {
    {
      Conn conn(port);
      ASSERT_GE(conn.fd, 0);
      conn.send_all(c.request);  // (the server may close before reading everything)
      // Incomplete requests may leave the server waiting for more: then no answer is fine.
      const std::string resp = conn.read_response(c.lo == 0 ? 3000 : 10000);
      const int st = status_of(resp);
      if (c.lo == 0) {
        EXPECT_TRUE(st == 0 || (st >= 400 && st <= c.hi)) << c.label << ": status " << st;
      } else {
        EXPECT_TRUE(st >= c.lo && st <= c.hi) << c.label << ": status " << st << "\n" << resp;
      }
    }
    EXPECT_TRUE(healthy(port)) << "server unhealthy after: " << c.label;
  }
  // A body shorter than its Content-Length, then the client vanishes.
  {
    Conn conn(port);
    conn.send_all("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"pro");
  }
  EXPECT_TRUE(healthy(port));
}

TEST(HardeningServe, ManyConnectionsAndSlowClients) {
  duet::ServeOptions o;
  o.http_threads = 8;
  auto s = start_or_skip(o);
  if (!s) GTEST_SKIP() << "this build has no HTTP server (cpp-httplib not linked)";
  const int port = s->port;
  // 200 connections opened and dropped at once (accept backlog / thread pool churn).
  {
    std::vector<std::unique_ptr<Conn>> conns;
    for (int i = 0; i < 200; ++i) conns.push_back(std::make_unique<Conn>(port));
    int ok = 0;
    for (auto& c : conns) ok += c->fd >= 0;
    EXPECT_GT(ok, 100);
  }
  EXPECT_TRUE(healthy(port, 10000));
  // Fewer slow clients than worker threads: they must not delay other clients.
  {
    std::vector<std::unique_ptr<Conn>> slow;
    for (int i = 0; i < o.http_threads / 2; ++i) {
      slow.push_back(std::make_unique<Conn>(port));
      slow.back()->send_all("POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Le");
    }
    const auto t0 = Clock::now();
    EXPECT_TRUE(healthy(port, 5000));
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 2.0);
  }
  // As many slow clients as worker threads: each holds a thread (thread-per-connection); once
  // they go away the server must answer again. (How long they can hold it is documented in
  // docs/robustness.md; not asserted here.)
  {
    std::vector<std::unique_ptr<Conn>> slow;
    for (int i = 0; i < o.http_threads + 2; ++i) {
      slow.push_back(std::make_unique<Conn>(port));
      slow.back()->send_all("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    }
    const auto t0 = Clock::now();
    const bool served = healthy(port, 1500);
    std::printf("[ slow clients ] %d stalled connections on %d threads: /healthz %s (%.2fs)\n",
                o.http_threads + 2, o.http_threads, served ? "served" : "NOT served",
                std::chrono::duration<double>(Clock::now() - t0).count());
  }
  EXPECT_TRUE(healthy(port, 10000)) << "server did not recover after slow clients closed";
}

// Slowloris: more tricklers than worker threads, each sending one header byte every 100 ms (well
// inside the read timeout, so only the request deadline can end them). A normal request must
// still be answered within deadline + scan period + margin, the tricklers get 408 or a closed
// connection, and the server counts them.
TEST(HardeningServe, RequestDeadlineEndsSlowloris) {
  duet::ServeOptions o;
  o.http_threads = 4;
  o.read_timeout_s = 5;
  o.request_deadline_s = 2;
  auto s = start_or_skip(o);
  if (!s) GTEST_SKIP() << "this build has no HTTP server (cpp-httplib not linked)";
  const int port = s->port;
  constexpr int kSlow = 6;
  std::vector<std::unique_ptr<Conn>> slow;
  for (int i = 0; i < kSlow; ++i) slow.push_back(std::make_unique<Conn>(port));
  std::atomic<bool> stop{false};
  std::vector<std::string> got(kSlow);
  std::thread trickler([&] {
    const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    for (size_t k = 0; !stop && k < 200; ++k) {
      for (auto& c : slow) c->send_all(std::string(1, k < head.size() ? head[k] : 'a'));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  // Every worker is held now; the tricklers reach the deadline ~1.2 s after this request starts,
  // well before the request's own clock (started when it connects) would.
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  const auto t0 = Clock::now();
  const bool served = healthy(port, 8000);
  const double waited = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("[ slowloris ] %d tricklers on %d threads, deadline %.0f s: /healthz %s in %.2fs\n",
              kSlow, o.http_threads, o.request_deadline_s, served ? "served" : "NOT served",
              waited);
  EXPECT_TRUE(served);
  EXPECT_LT(waited, o.request_deadline_s + 1.5);
  stop = true;
  trickler.join();
  int ended = 0;
  for (int i = 0; i < kSlow; ++i) {
    got[i] = slow[i]->read_response(2000);
    const int st = status_of(got[i]);
    ended += st == 408 || st == 0;  // answered 408, or closed
    EXPECT_TRUE(st == 408 || st == 0) << got[i];
  }
  EXPECT_EQ(ended, kSlow);
#ifdef DUET_TEST_HAVE_HTTP
  auto c = s->client();
  const auto met = c->Get("/metrics");
  ASSERT_TRUE(met);
  EXPECT_GE(duet::testing::metric_value(met->body, "duet_slow_connections_closed_total"), kSlow);
#endif
}
