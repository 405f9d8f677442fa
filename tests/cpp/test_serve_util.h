// Helpers for the `duet serve` tests: a Server with the fake engine on an ephemeral port and
// small JSON / metrics helpers. Only usable when the build links cpp-httplib (see serve.h).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "duet/serve.h"

#if defined(CPPHTTPLIB_OPENSSL_SUPPORT)
#include <httplib.h>
#define DUET_TEST_HAVE_HTTP 1
#endif

namespace duet::testing {

using nlohmann::json;

struct TestServer {
  std::unique_ptr<Server> server;
  int port = 0;

  static std::unique_ptr<TestServer> start(ServeOptions o = {}, FakeEngineOptions f = {}) {
    o.port = 0;
    auto r = Server::start(make_fake_engine(f), o);
    if (!r.is_ok()) {
      ADD_FAILURE() << r.status().to_string();
      return nullptr;
    }
    auto t = std::make_unique<TestServer>();
    t->server = std::move(r).value();
    t->port = t->server->port();
    return t;
  }
#ifdef DUET_TEST_HAVE_HTTP
  std::unique_ptr<httplib::Client> client(int read_timeout_s = 30) const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
    c->set_read_timeout(read_timeout_s, 0);
    return c;
  }
#endif
};

inline json parse_or_null(const std::string& s) {
  return json::parse(s, nullptr, /*allow_exceptions=*/false);
}

// The value of an unlabelled metric line "name value" (or -1).
inline double metric_value(const std::string& text, const std::string& name) {
  size_t pos = 0;
  while ((pos = text.find(name + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') return std::stod(text.substr(pos + name.size() + 1));
    pos += name.size();
  }
  return -1;
}

inline std::string gen_body(const std::string& prompt, int steps = 4, int n = 1,
                            const std::string& extra = "") {
  return R"({"prompt":")" + prompt + R"(","steps":)" + std::to_string(steps) + R"(,"n":)" +
         std::to_string(n) + R"(,"size":"16x16","seed":7)" + extra + "}";
}

}  // namespace duet::testing
