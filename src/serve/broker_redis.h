// The Redis broker client behind `duet serve --broker` (gateway) and `duet worker`: URL parsing,
// one synchronous connection (hiredis; not thread-safe: one per thread) and a small pool for the
// gateway's HTTP threads. Every call has a deadline, so a broker that is down or unreachable
// answers an error within it and never hangs a caller. See docs/scale-out.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "duet/status.h"

struct redisContext;
struct redisReply;

namespace duet::serve {

struct BrokerUrl {
  std::string host;
  int port = 6379;
  int db = 0;
  std::string text;  // as given (for messages)
};

// redis://HOST[:PORT][/DB]; anything else -> kInvalidArgument with a one-line reason.
Result<BrokerUrl> parse_broker_url(const std::string& url);

// A reply, owned (an array's elements are replies too).
struct Reply {
  enum class Type { kNil, kInt, kString, kStatus, kArray };
  Type type = Type::kNil;
  int64_t integer = 0;
  std::string str;
  std::vector<Reply> elements;

  bool nil() const { return type == Type::kNil; }
};

class RedisConn {
 public:
  // Connects (and SELECTs the db) within `timeout`; each later command also gets `timeout`.
  static Result<std::unique_ptr<RedisConn>> connect(const BrokerUrl& url,
                                                    std::chrono::milliseconds timeout);
  ~RedisConn();
  RedisConn(const RedisConn&) = delete;
  RedisConn& operator=(const RedisConn&) = delete;

  // One command, binary-safe arguments. A Redis error reply -> kInternal with its text; a
  // broken connection -> kUnavailable (the connection is then unusable: broken() is true).
  Result<Reply> command(const std::vector<std::string>& args);
  // A command that blocks on the server (XREADGROUP BLOCK): the socket timeout is raised to
  // `timeout` for this call only.
  Result<Reply> blocking_command(const std::vector<std::string>& args,
                                 std::chrono::milliseconds timeout);
  bool broken() const { return broken_; }

 private:
  RedisConn(redisContext* c, BrokerUrl url, std::chrono::milliseconds timeout);
  Result<Reply> run(const std::vector<std::string>& args);
  redisContext* c_;
  BrokerUrl url_;
  std::chrono::milliseconds timeout_;
  bool broken_ = false;
};

// Connections shared by many threads: acquire() hands one out (connecting when none is idle);
// a connection that broke is dropped on release. Reconnecting is lazy: every call after the
// broker comes back works again.
class RedisPool {
 public:
  RedisPool(BrokerUrl url, std::chrono::milliseconds timeout)
      : url_(std::move(url)), timeout_(timeout) {}
  Result<Reply> command(const std::vector<std::string>& args);
  const BrokerUrl& url() const { return url_; }

 private:
  BrokerUrl url_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::vector<std::unique_ptr<RedisConn>> idle_;
};

// Reply helpers: the integer of an int reply or of a numeric string, else `fallback`.
int64_t reply_int(const Reply& r, int64_t fallback = 0);
// A flat field/value array (HGETALL) -> value of `field`, "" when absent.
std::string reply_field(const Reply& r, const std::string& field);

}  // namespace duet::serve
