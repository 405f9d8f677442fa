#include "serve/broker_redis.h"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>

namespace duet::serve {
namespace {

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::kInt;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::kString;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::kArray;
      out.elements.reserve(r->elements);
      for (size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      break;
  }
  return out;
}

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv;
  tv.tv_sec = ms.count() / 1000;
  tv.tv_usec = (ms.count() % 1000) * 1000;
  return tv;
}

}  // namespace

Result<BrokerUrl> parse_broker_url(const std::string& url) {
  BrokerUrl u;
  u.text = url;
  const std::string scheme = "redis://";
  auto fail = [&](const std::string& why) {
    return invalid_argument("--broker " + url + ": " + why +
                            " (expected redis://HOST[:PORT][/DB])");
  };
  if (url.rfind(scheme, 0) != 0) return fail("the scheme must be redis://");
  std::string rest = url.substr(scheme.size());
  if (rest.find('@') != std::string::npos) return fail("credentials in the URL are not supported");
  const size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    const std::string db = rest.substr(slash + 1);
    if (!db.empty()) {
      if (!all_digits(db)) return fail("the database must be a number, got '" + db + "'");
      u.db = std::stoi(db);
    }
    rest = rest.substr(0, slash);
  }
  const size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']') == std::string::npos) {
    const std::string port = rest.substr(colon + 1);
    if (!all_digits(port) || std::stoi(port) < 1 || std::stoi(port) > 65535)
      return fail("the port must be a number in [1, 65535], got '" + port + "'");
    u.port = std::stoi(port);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return fail("no host");
  u.host = rest;
  return u;
}

Result<std::unique_ptr<RedisConn>> RedisConn::connect(const BrokerUrl& url,
                                                      std::chrono::milliseconds timeout) {
  redisContext* c = redisConnectWithTimeout(url.host.c_str(), url.port, to_timeval(timeout));
  const std::string where = "broker " + url.text + " unreachable: ";
  if (!c) return io_error(where + "out of memory");
  if (c->err) {
    std::string why = c->errstr;
    redisFree(c);
    return io_error(where + why);
  }
  redisSetTimeout(c, to_timeval(timeout));
  std::unique_ptr<RedisConn> conn(new RedisConn(c, url, timeout));
  if (url.db != 0) {
    auto r = conn->command({"SELECT", std::to_string(url.db)});
    if (!r) return Status(r.status().code(), "broker " + url.text + ": " + r.status().message());
  }
  return conn;
}

RedisConn::RedisConn(redisContext* c, BrokerUrl url, std::chrono::milliseconds timeout)
    : c_(c), url_(std::move(url)), timeout_(timeout) {}

RedisConn::~RedisConn() { redisFree(c_); }

Result<Reply> RedisConn::run(const std::vector<std::string>& args) {
  if (broken_) return io_error("broker " + url_.text + ": connection lost");
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data()));
  if (!r) {
    broken_ = true;
    std::string why = c_->errstr[0] ? c_->errstr : "connection lost";
    if (c_->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
      why = "no answer within " + std::to_string(timeout_.count()) + " ms";
    return io_error("broker " + url_.text + ": " + why);
  }
  if (r->type == REDIS_REPLY_ERROR) {
    std::string msg(r->str, r->len);
    freeReplyObject(r);
    return internal_error("broker " + url_.text + ": " + msg);
  }
  Reply out = convert(r);
  freeReplyObject(r);
  return out;
}

Result<Reply> RedisConn::command(const std::vector<std::string>& args) { return run(args); }

Result<Reply> RedisConn::blocking_command(const std::vector<std::string>& args,
                                          std::chrono::milliseconds timeout) {
  redisSetTimeout(c_, to_timeval(timeout + timeout_));
  auto r = run(args);
  if (!broken_) redisSetTimeout(c_, to_timeval(timeout_));
  return r;
}

Result<Reply> RedisPool::command(const std::vector<std::string>& args) {
  std::unique_ptr<RedisConn> conn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      conn = std::move(idle_.back());
      idle_.pop_back();
    }
  }
  if (!conn) {
    auto c = RedisConn::connect(url_, timeout_);
    if (!c) return c.status();
    conn = std::move(c).value();
  }
  auto r = conn->command(args);
  if (!conn->broken()) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_.push_back(std::move(conn));
  }
  return r;
}

int64_t reply_int(const Reply& r, int64_t fallback) {
  if (r.type == Reply::Type::kInt) return r.integer;
  if (r.type == Reply::Type::kString && !r.str.empty()) {
    char* end = nullptr;
    const long long v = std::strtoll(r.str.c_str(), &end, 10);
    if (end && *end == '\0') return v;
  }
  return fallback;
}

std::string reply_field(const Reply& r, const std::string& field) {
  for (size_t i = 0; i + 1 < r.elements.size(); i += 2)
    if (r.elements[i].str == field) return r.elements[i + 1].str;
  return "";
}

}  // namespace duet::serve
