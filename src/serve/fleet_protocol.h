// What gateways and workers agree on in Redis (docs/scale-out.md): key names, the job hash, the
// request and model-description encodings, and the Lua scripts that move a job between states
// atomically (submit with the backlog limit, claim with the attempt fence, finish, retry, cancel).
#pragma once

#include <memory>
#include <string>

#include "duet/serve_engine.h"
#include "duet/status.h"
#include "serve/broker_redis.h"
#include "serve/jobs.h"

namespace duet::serve::fleet {

constexpr const char* kGroup = "workers";

struct Keys {
  std::string prefix = "duet";
  std::string models() const { return prefix + ":models"; }                         // set of names
  std::string model(const std::string& m) const { return prefix + ":model:" + m; }  // EngineInfo
  std::string stream(const std::string& m) const { return prefix + ":stream:" + m; }
  std::string backlog(const std::string& m) const { return prefix + ":backlog:" + m; }
  std::string stats(const std::string& m) const { return prefix + ":stats:" + m; }
  std::string job(const std::string& id) const { return prefix + ":job:" + id; }
  std::string worker(const std::string& name) const { return prefix + ":worker:" + name; }
};

// The full request (img2img images included, as raw little-endian floats in base64).
std::string request_to_json(const ImageRequest& r);
Result<ImageRequest> request_from_json(const std::string& text);

// The model description a worker publishes (EngineInfo), and back.
std::string info_to_json(const EngineInfo& info);
Result<EngineInfo> info_from_json(const std::string& text);

int64_t now_ms();  // wall clock, ms since the epoch (shared by machines)

// A Job for the API formatters (job_json, images_json) from a job hash (HGETALL reply).
std::shared_ptr<Job> job_from_hash(const std::string& id, const Reply& hash);

// KEYS job, stream, backlog, stats. ARGV max_queue, pending_ttl_s, job id, field/value...
// -> backlog after the submit, or -backlog when the backlog is full (nothing written).
extern const char* kSubmitScript;
// KEYS job, backlog, stats. ARGV worker, max_attempts, now_ms, why the previous attempt ended
// (for a running job: reclaimed from a dead worker), ttl_s.
// -> {attempt, request json} to run it; {-1} final/cancelled; {-2} gone; {-3} out of attempts.
extern const char* kClaimScript;
// KEYS job, stats. ARGV attempt, ttl_s, final state, field/value... -> 1 written, 0 fenced.
extern const char* kFinishScript;
// KEYS job, stream, backlog. ARGV attempt, reason, job id, hand_back (1: not a failed attempt)
// -> 1 queued again, 0 fenced.
extern const char* kRetryScript;
// KEYS job, backlog, stats. ARGV now_ms, ttl_s, reason -> 1 cancelled while queued, 2 cancel
// flagged for the worker running it, 0 already final, -1 no such job.
extern const char* kCancelScript;

}  // namespace duet::serve::fleet
