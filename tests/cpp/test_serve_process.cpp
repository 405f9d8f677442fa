// Process-level tests: start the `duet serve` binary, talk to it over HTTP, send SIGTERM and
// check that it drains in-flight work and exits 0. With the fake engine always; with a real model
// when tests/fixtures/tiny-demo exists and this build can load it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "test_serve_util.h"

#if defined(DUET_TEST_HAVE_HTTP) && defined(DUET_CLI_PATH)

namespace duet::testing {
namespace {

struct ServeProcess {
  pid_t pid = -1;
  int out_fd = -1;
  int port = 0;
  std::string err_path, output;

  ~ServeProcess() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (out_fd >= 0) close(out_fd);
    if (!err_path.empty()) std::filesystem::remove(err_path);
  }

  bool start(std::vector<std::string> args) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    char tmpl[] = "/tmp/duet_serve_err_XXXXXX";
    const int err_fd = mkstemp(tmpl);
    err_path = tmpl;
    args.insert(args.begin(), {DUET_CLI_PATH, "serve", "--port", "0"});
    pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      dup2(err_fd, 2);
      close(fds[0]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    close(err_fd);
    out_fd = fds[0];
    // Wait for "listening on http://HOST:PORT".
    while (port == 0) {
      if (!read_some(20000)) return false;
      const size_t at = output.find("listening on http://");
      if (at != std::string::npos) {
        const size_t colon = output.find(':', at + 20);
        const size_t end = output.find_first_of(" \n", colon);
        if (colon != std::string::npos && end != std::string::npos)
          port = std::stoi(output.substr(colon + 1, end - colon - 1));
      }
    }
    return true;
  }

  bool read_some(int timeout_ms) {
    pollfd p{out_fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[4096];
    const ssize_t n = read(out_fd, buf, sizeof buf);
    if (n <= 0) return false;
    output.append(buf, n);
    return true;
  }

  std::string stderr_text() const {
    std::ifstream f(err_path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }

  // Exit status after SIGTERM (or -1 on timeout / abnormal exit).
  int wait_exit(int timeout_ms) {
    for (int waited = 0; waited < timeout_ms; waited += 20) {
      int status = 0;
      if (waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        while (read_some(0)) {
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      usleep(20000);
    }
    return -1;
  }
};

TEST(ServeProcess, FakeEngineDrainsOnSigtermAndExitsZero) {
  ServeProcess p;
  ASSERT_TRUE(p.start({"--fake-engine", "--fake-step-ms", "10", "--drain-timeout", "20"}))
      << p.output << p.stderr_text();
  httplib::Client c("127.0.0.1", p.port);
  auto r = c.Post("/v1/jobs", gen_body("in flight", 60), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202);
  const std::string id = parse_or_null(r->body)["id"];
  ASSERT_EQ(kill(p.pid, SIGTERM), 0);
  // While draining: the job still runs to completion and can be read; new work is refused.
  json j;
  for (int i = 0; i < 200; ++i) {
    auto g = c.Get("/v1/jobs/" + id);
    if (!g) break;
    j = parse_or_null(g->body);
    if (j["state"] == "succeeded") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(j["state"], "succeeded") << j.dump();
  EXPECT_EQ(p.wait_exit(20000), 0) << p.output << p.stderr_text();
  EXPECT_NE(p.output.find("SIGTERM received"), std::string::npos) << p.output;
  EXPECT_NE(p.output.find("stopped (0 jobs cancelled"), std::string::npos) << p.output;
}

TEST(ServeProcess, SigtermCancelsWorkPastTheDeadline) {
  ServeProcess p;
  ASSERT_TRUE(p.start({"--fake-engine", "--fake-step-ms", "20", "--drain-timeout", "0.3"}));
  httplib::Client c("127.0.0.1", p.port);
  ASSERT_EQ(c.Post("/v1/jobs", gen_body("endless", 1000), "application/json")->status, 202);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(kill(p.pid, SIGTERM), 0);
  EXPECT_EQ(p.wait_exit(10000), 0) << p.stderr_text();
  EXPECT_NE(p.output.find("stopped (1 jobs cancelled"), std::string::npos) << p.output;
}

TEST(ServeProcess, RealModelServesAndDrains) {
  const std::string dir = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";
  if (!std::filesystem::exists(dir + "/config.json") ||
      !std::filesystem::exists(dir + "/model.safetensors"))
    GTEST_SKIP() << "no model at " << dir;
  ServeProcess p;
  if (!p.start({"--model", dir, "--threads", "2"})) {
    const std::string err = p.stderr_text();
    if (err.find("unimplemented") != std::string::npos)
      GTEST_SKIP() << "this build cannot load models yet: " << err;
    FAIL() << "duet serve did not start: " << p.output << err;
  }
  httplib::Client c("127.0.0.1", p.port);
  c.set_read_timeout(120, 0);
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  auto r =
      c.Post("/v1/images/generations",
             R"({"prompt":"a photo of a sneaker","n":2,"steps":3,"seed":5})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(parse_or_null(r->body)["data"].size(), 2u);
  ASSERT_EQ(kill(p.pid, SIGTERM), 0);
  EXPECT_EQ(p.wait_exit(60000), 0) << p.stderr_text();
}

// --continuous-batching with the real model: concurrent requests (joining each other's running
// batch at different points of their refine schedules) get the images they get alone.
TEST(ServeProcess, RealModelContinuousBatching) {
  const std::string dir = std::string(DUET_SOURCE_DIR) + "/tests/fixtures/tiny-demo";
  if (!std::filesystem::exists(dir + "/model.safetensors")) GTEST_SKIP() << "no model at " << dir;
  ServeProcess p;
  ASSERT_TRUE(p.start({"--model", dir, "--threads", "2", "--continuous-batching"}))
      << p.output << p.stderr_text();
  EXPECT_NE(p.output.find(", continuous"), std::string::npos) << p.output;
  auto generate = [&](int seed) {
    httplib::Client c("127.0.0.1", p.port);
    c.set_read_timeout(120, 0);
    auto r = c.Post("/v1/images/generations",
                    R"({"prompt":"a dark bag","steps":7,"seed":)" + std::to_string(seed) + "}",
                    "application/json");
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no answer");
    return r && r->status == 200 ? parse_or_null(r->body)["data"][0].value("b64_json", "") : "";
  };
  std::vector<std::string> together(4);
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&, i] { together[i] = generate(10 + i); });
    std::this_thread::sleep_for(std::chrono::milliseconds(3 * i));  // joins at different calls
  }
  for (auto& t : clients) t.join();
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(together[i].empty());
    EXPECT_EQ(together[i], generate(10 + i)) << "request " << i << " batched vs alone";
  }
  ASSERT_EQ(kill(p.pid, SIGTERM), 0);
  EXPECT_EQ(p.wait_exit(60000), 0) << p.stderr_text();
}

}  // namespace
}  // namespace duet::testing

#else
TEST(ServeProcess, SkippedWithoutHttplib) {
  GTEST_SKIP() << "this build does not link cpp-httplib (pkg-config cpp-httplib)";
}
#endif
