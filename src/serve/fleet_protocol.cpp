#include "serve/fleet_protocol.h"

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "serve/api.h"
#include "serve/image_input.h"

namespace duet::serve::fleet {
namespace {

using nlohmann::json;

std::string floats_b64(const std::vector<float>& v) {
  std::string bytes(v.size() * sizeof(float), '\0');
  if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
  return base64_encode(bytes);
}

bool b64_floats(const std::string& s, std::vector<float>* out) {
  std::string bytes;
  if (!base64_decode(s, &bytes) || bytes.size() % sizeof(float) != 0) return false;
  out->resize(bytes.size() / sizeof(float));
  if (!bytes.empty()) std::memcpy(out->data(), bytes.data(), bytes.size());
  return true;
}

double num(const std::string& s) { return s.empty() ? 0.0 : std::strtod(s.c_str(), nullptr); }

}  // namespace

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string request_to_json(const ImageRequest& r) {
  json j = {{"prompt", r.prompt},
            {"negative_prompt", r.negative_prompt},
            {"n", r.n},
            {"width", r.width},
            {"height", r.height},
            {"steps", r.steps},
            {"sampler", r.sampler},
            {"cfg_scale", r.cfg_scale},
            {"seed", r.seed},
            {"refine_every", r.refine_every},
            {"karras", r.karras},
            {"cfg_sigma_lo", r.cfg_sigma_lo},
            {"cfg_sigma_hi", r.cfg_sigma_hi},
            {"strength", r.strength},
            {"cache", cache_spec_string(r.cache)}};
  if (r.init_image) j["init_image"] = floats_b64(*r.init_image);
  if (r.mask) j["mask"] = floats_b64(*r.mask);
  return j.dump();
}

Result<ImageRequest> request_from_json(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument("job request is not JSON");
  try {
    ImageRequest r;
    r.prompt = j.at("prompt").get<std::string>();
    r.negative_prompt = j.at("negative_prompt").get<std::string>();
    r.n = j.at("n").get<int>();
    r.width = j.at("width").get<int>();
    r.height = j.at("height").get<int>();
    r.steps = j.at("steps").get<int>();
    r.sampler = j.at("sampler").get<std::string>();
    r.cfg_scale = j.at("cfg_scale").get<float>();
    r.seed = j.at("seed").get<int64_t>();
    r.refine_every = j.at("refine_every").get<int>();
    r.karras = j.at("karras").get<bool>();
    r.cfg_sigma_lo = j.at("cfg_sigma_lo").get<double>();
    r.cfg_sigma_hi = j.at("cfg_sigma_hi").get<double>();
    r.strength = j.at("strength").get<double>();
    if (j.contains("cache")) {
      DUET_ASSIGN_OR_RETURN(r.cache, parse_cache_spec(j.at("cache").get<std::string>()));
    }
    for (const char* key : {"init_image", "mask"}) {
      if (!j.contains(key)) continue;
      auto v = std::make_shared<std::vector<float>>();
      if (!b64_floats(j[key].get<std::string>(), v.get()))
        return invalid_argument(std::string("job request: bad ") + key);
      (std::strcmp(key, "mask") == 0 ? r.mask : r.init_image) = std::move(v);
    }
    return r;
  } catch (const std::exception& e) {
    return invalid_argument(std::string("job request: ") + e.what());
  }
}

std::string info_to_json(const EngineInfo& i) {
  return json{{"model", i.model},
              {"channels", i.channels},
              {"width", i.width},
              {"height", i.height},
              {"stride", i.stride},
              {"other_sizes", i.other_sizes},
              {"max_side", i.max_side},
              {"max_steps", i.max_steps},
              {"max_n", i.max_n},
              {"samplers", i.samplers},
              {"default_sampler", i.default_sampler},
              {"default_steps", i.default_steps},
              {"default_cfg_scale", i.default_cfg_scale},
              {"default_refine_every", i.default_refine_every},
              {"threads", i.threads},
              {"cpu_json", i.cpu_json}}
      .dump();
}

Result<EngineInfo> info_from_json(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument("model description is not JSON");
  try {
    EngineInfo i;
    i.model = j.at("model").get<std::string>();
    i.channels = j.at("channels").get<int>();
    i.width = j.at("width").get<int>();
    i.height = j.at("height").get<int>();
    i.stride = j.at("stride").get<int>();
    i.other_sizes = j.at("other_sizes").get<bool>();
    i.max_side = j.at("max_side").get<int>();
    i.max_steps = j.at("max_steps").get<int>();
    i.max_n = j.at("max_n").get<int>();
    i.samplers = j.at("samplers").get<std::vector<std::string>>();
    i.default_sampler = j.at("default_sampler").get<std::string>();
    i.default_steps = j.at("default_steps").get<int>();
    i.default_cfg_scale = j.at("default_cfg_scale").get<float>();
    i.default_refine_every = j.at("default_refine_every").get<int>();
    i.threads = j.at("threads").get<int>();
    i.cpu_json = j.at("cpu_json").get<std::string>();
    return i;
  } catch (const std::exception& e) {
    return invalid_argument(std::string("model description: ") + e.what());
  }
}

std::shared_ptr<Job> job_from_hash(const std::string& id, const Reply& h) {
  auto job = std::make_shared<Job>();
  job->id = id;
  auto req = request_from_json(reply_field(h, "request"));
  if (req.is_ok()) job->request = std::move(req).value();
  job->created_unix = static_cast<int64_t>(num(reply_field(h, "created_unix")));
  const int64_t now = now_ms();
  auto ago = [&](const std::string& field) {
    const double ms = num(reply_field(h, field));
    return Clock::now() - std::chrono::milliseconds(ms > 0 ? now - static_cast<int64_t>(ms) : 0);
  };
  job->created = ago("created_ms");
  job->started = ago("started_ms");
  const std::string st = reply_field(h, "state");
  job->state = st == "running"     ? JobState::kRunning
               : st == "succeeded" ? JobState::kSucceeded
               : st == "failed"    ? JobState::kFailed
               : st == "cancelled" ? JobState::kCancelled
                                   : JobState::kQueued;
  job->step = static_cast<int>(num(reply_field(h, "step")));
  job->queue_s = num(reply_field(h, "queue_s"));
  job->run_s = num(reply_field(h, "run_s"));
  if (reply_field(h, "cancel") == "1") job->cancel.store(true);
  const std::string code = reply_field(h, "error_code");
  if (!code.empty()) {
    const StatusCode c = code == "cancelled"            ? StatusCode::kCancelled
                         : code == "resource_exhausted" ? StatusCode::kResourceExhausted
                         : code == "invalid_argument"   ? StatusCode::kInvalidArgument
                                                        : StatusCode::kInternal;
    job->error = Status(c, reply_field(h, "error_message"));
  }
  if (job->state == JobState::kSucceeded) {
    auto out = std::make_shared<ImageOutput>();
    json seeds = json::parse(reply_field(h, "seeds"), nullptr, false);
    if (seeds.is_array()) out->seeds = seeds.get<std::vector<int64_t>>();
    out->n = job->request.n;
    out->timings.encode_s = num(reply_field(h, "encode_s"));
    out->timings.denoise_s = num(reply_field(h, "denoise_s"));
    out->model_evaluations = static_cast<int>(num(reply_field(h, "evals")));
    job->output = std::move(out);
  }
  return job;
}

const char* kSubmitScript = R"lua(
local b = tonumber(redis.call('GET', KEYS[3]) or '0')
if b >= tonumber(ARGV[1]) then return -b end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', 'id', ARGV[3])
redis.call('HINCRBY', KEYS[4], 'submitted', 1)
return redis.call('INCR', KEYS[3])
)lua";

const char* kClaimScript = R"lua(
if redis.call('EXISTS', KEYS[1]) == 0 then return {-2} end
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'queued' and st ~= 'running' then return {-1} end
if st == 'queued' then redis.call('DECR', KEYS[2]) end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'last_error',
             'worker ' .. (redis.call('HGET', KEYS[1], 'worker') or '?') .. ' ' .. ARGV[4])
  redis.call('HINCRBY', KEYS[3], 'reclaimed', 1)
end
local a = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if redis.call('HGET', KEYS[1], 'cancel') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error_code', 'cancelled',
             'error_message', 'cancelled by the client', 'finished_ms', ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {-1}
end
if a >= tonumber(ARGV[2]) then
  local why = redis.call('HGET', KEYS[1], 'last_error') or 'unknown'
  redis.call('HSET', KEYS[1], 'state', 'failed', 'error_code', 'internal', 'error_message',
             'failed on ' .. a .. ' attempts; the last: ' .. why, 'finished_ms', ARGV[3])
  redis.call('HINCRBY', KEYS[3], 'failed', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return {-3}
end
a = a + 1
local created = tonumber(redis.call('HGET', KEYS[1], 'created_ms') or ARGV[3])
redis.call('HSET', KEYS[1], 'state', 'running', 'attempt', a, 'worker', ARGV[1],
           'started_ms', ARGV[3], 'step', 0)
if a == 1 then
  redis.call('HINCRBYFLOAT', KEYS[3], 'queue_wait_sum', (tonumber(ARGV[3]) - created) / 1000)
  redis.call('HINCRBY', KEYS[3], 'queue_wait_count', 1)
end
return {a, redis.call('HGET', KEYS[1], 'request')}
)lua";

const char* kFinishScript = R"lua(
if tonumber(redis.call('HGET', KEYS[1], 'attempt') or '-1') ~= tonumber(ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local q = (tonumber(redis.call('HGET', KEYS[1], 'started_ms')) -
           tonumber(redis.call('HGET', KEYS[1], 'created_ms'))) / 1000
redis.call('HSET', KEYS[1], 'state', ARGV[3], 'queue_s', q, unpack(ARGV, 4))
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
)lua";

const char* kRetryScript = R"lua(
if tonumber(redis.call('HGET', KEYS[1], 'attempt') or '-1') ~= tonumber(ARGV[1]) then return 0 end
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued', 'last_error', ARGV[2], 'worker', '', 'step', 0)
if ARGV[4] == '1' then redis.call('HINCRBY', KEYS[1], 'attempt', -1) end
redis.call('XADD', KEYS[2], '*', 'id', ARGV[3])
redis.call('INCR', KEYS[3])
return 1
)lua";

const char* kCancelScript = R"lua(
local st = redis.call('HGET', KEYS[1], 'state')
if not st then return -1 end
if st == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'error_code', 'cancelled',
             'error_message', ARGV[3], 'finished_ms', ARGV[1], 'cancel', '1')
  redis.call('DECR', KEYS[2])
  redis.call('HINCRBY', KEYS[3], 'cancelled', 1)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
if st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
  return 2
end
return 0
)lua";

}  // namespace duet::serve::fleet
