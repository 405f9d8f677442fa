// ConnectionGuard: the request deadline of `duet serve`
// (ServeOptions::request_deadline_s).
//
// cpp-httplib 0.11 gives each connection a worker thread and only bounds each
// socket read (set_read_timeout), so a client that trickles one header byte per
// read timeout holds a worker forever, and http_threads of them starve everyone
// (slowloris). This guard watches the server's connected sockets (found in
// /proc/self/fd by local port, like the disconnect detection) and times each
// connection's reading phase: from its first sighting, or from the end of its
// previous response, until a route handler starts. A connection still reading
// after the deadline gets a 408 (if it never completed a request) and is shut
// down, which frees its worker.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace duet::serve {

class ConnectionGuard {
 public:
  // deadline_s <= 0: no watchdog thread (begin/end are no-ops). on_close runs
  // per closed socket.
  ConnectionGuard(int server_port, double deadline_s, std::function<void()> on_close = {});
  ~ConnectionGuard();
  ConnectionGuard(const ConnectionGuard &) = delete;
  ConnectionGuard &operator=(const ConnectionGuard &) = delete;

  // A route handler starts on the connection from addr:port (its request has
  // been read).
  void begin_handler(const std::string &addr, int port);
  // The connection's response has been written (keep-alive: the next request's
  // clock starts).
  void end_request(const std::string &addr, int port);
  void stop();

 private:
  using Clock = std::chrono::steady_clock;
  struct Conn {
    Clock::time_point since;
    bool busy = false;
    int requests = 0;
    uint64_t scan = 0;  // the last scan that saw the socket
  };
  void loop();
  void scan_once();

  int port_;
  std::chrono::duration<double> deadline_;
  std::function<void()> on_close_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t scan_ = 0;
  std::map<std::string, Conn> conns_;  // by "addr|port" of the peer
  std::thread thread_;
};

}  // namespace duet::serve
