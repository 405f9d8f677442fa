#include "serve/conn_guard.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

namespace duet::serve {

namespace {

std::string key_of(const std::string &addr, int port) { return addr + "|" + std::to_string(port); }

// The peer key of fd when it is a connected socket on local port `port` (""
// otherwise).
std::string peer_key(int fd, int port) {
  sockaddr_storage local{}, peer{};
  socklen_t ll = sizeof local, pl = sizeof peer;
  if (getsockname(fd, reinterpret_cast<sockaddr *>(&local), &ll) != 0) return "";
  auto port_of = [](const sockaddr_storage &s) -> int {
    if (s.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in &>(s).sin_port);
    if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6 &>(s).sin6_port);
    return -1;
  };
  if (port_of(local) != port) return "";
  if (getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &pl) != 0) return "";  // listener
  char host[INET6_ADDRSTRLEN] = {};
  if (peer.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in &>(peer).sin_addr, host, sizeof host);
  else
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6 &>(peer).sin6_addr, host, sizeof host);
  return key_of(host, port_of(peer));
}

constexpr char k408Body[] =
    R"({"error":{"message":"request not received within the server's request deadline",)"
    R"("type":"timeout_error","param":null,"code":408}})";

}  // namespace

ConnectionGuard::ConnectionGuard(int server_port, double deadline_s, std::function<void()> on_close)
    : port_(server_port), deadline_(deadline_s), on_close_(std::move(on_close)) {
  if (deadline_s > 0) thread_ = std::thread([this] { loop(); });
}

ConnectionGuard::~ConnectionGuard() { stop(); }

void ConnectionGuard::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectionGuard::begin_handler(const std::string &addr, int port) {
  if (!thread_.joinable()) return;
  std::lock_guard<std::mutex> lock(mu_);
  Conn &c = conns_[key_of(addr, port)];
  c.busy = true;
  c.scan = scan_;
}

void ConnectionGuard::end_request(const std::string &addr, int port) {
  if (!thread_.joinable()) return;
  std::lock_guard<std::mutex> lock(mu_);
  Conn &c = conns_[key_of(addr, port)];
  c.busy = false;
  c.since = Clock::now();
  c.scan = scan_;
  ++c.requests;
}

void ConnectionGuard::loop() {
  const auto period =
      std::chrono::duration<double>(std::min(0.25, std::max(0.01, deadline_.count() / 4)));
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, period, [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    scan_once();
    lock.lock();
  }
}

void ConnectionGuard::scan_once() {
  std::vector<std::pair<int, std::string>> socks;
  if (DIR *dir = opendir("/proc/self/fd")) {
    while (dirent *e = readdir(dir)) {
      char *end = nullptr;
      const long fd = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end != '\0') continue;
      std::string key = peer_key(static_cast<int>(fd), port_);
      if (!key.empty()) socks.emplace_back(static_cast<int>(fd), std::move(key));
    }
    closedir(dir);
  }
  const auto now = Clock::now();
  struct Expired {
    int fd;
    std::string key;
    bool send_408;
  };
  std::vector<Expired> expired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t scan = ++scan_;
    for (auto &[fd, key] : socks) {
      auto [it, fresh] = conns_.try_emplace(key);
      Conn &c = it->second;
      if (fresh) c.since = now;
      c.scan = scan;
      if (!c.busy && now - c.since > deadline_) {
        expired.push_back({fd, key, c.requests == 0});
        c.since = now;  // once
      }
    }
    for (auto it = conns_.begin(); it != conns_.end();)  // forget closed sockets
      it = it->second.scan + 1 < scan ? conns_.erase(it) : std::next(it);
  }
  for (const Expired &e : expired) {
    // The fd may have been closed and reused since the scan: act only if it
    // still is the same connection (same peer address and port).
    const int fd = e.fd;
    if (peer_key(fd, port_) != e.key) continue;
    if (e.send_408) {
      const std::string body = k408Body;
      const std::string msg =
          "HTTP/1.1 408 Request Timeout\r\nContent-Type: "
          "application/json\r\nContent-Length: " +
          std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      (void)::send(fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    ::shutdown(fd, SHUT_RDWR);
    if (on_close_) on_close_();
  }
}

}  // namespace duet::serve
