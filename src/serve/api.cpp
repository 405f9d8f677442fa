#include "serve/api.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

namespace duet::serve {
namespace {

using nlohmann::json;

// Reads an integer field (a JSON integer, or a float with an integral value).
bool get_int(const json& j, const char* key, int64_t lo, int64_t hi, int64_t* out, ApiError* err) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  double v = 0;
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      *err = bad(key, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) +
                          ", " + std::to_string(hi) + "]");
      return false;
    }
    const int64_t i = it->get<int64_t>();
    if (i < lo || i > hi) {
      *err = bad(key, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) +
                          ", " + std::to_string(hi) + "], got " + std::to_string(i));
      return false;
    }
    *out = i;
    return true;
  }
  if (it->is_number_float()) v = it->get<double>();
  if (!it->is_number() || !std::isfinite(v) || v != std::floor(v) || v < static_cast<double>(lo) ||
      v > static_cast<double>(hi) || v >= 0x1p63 || v < -0x1p63) {  // (double)INT64_MAX == 2^63
    *err = bad(key, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "], got " + it->dump());
    return false;
  }
  *out = static_cast<int64_t>(v);
  return true;
}

bool get_string(const json& j, const char* key, size_t max_len, std::string* out, ApiError* err) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return true;
  if (!it->is_string()) {
    *err = bad(key, std::string("'") + key + "' must be a string, got " + it->type_name());
    return false;
  }
  *out = it->get<std::string>();
  if (out->size() > max_len) {
    *err =
        bad(key, std::string("'") + key + "' is longer than " + std::to_string(max_len) + " bytes");
    return false;
  }
  return true;
}

bool parse_size(const std::string& s, int* w, int* h) {
  const size_t x = s.find('x');
  if (x == std::string::npos || x == 0 || x + 1 >= s.size() || x > 5 || s.size() - x - 1 > 5)
    return false;
  for (size_t i = 0; i < s.size(); ++i)
    if (i != x && (s[i] < '0' || s[i] > '9')) return false;
  *w = std::stoi(s.substr(0, x));
  *h = std::stoi(s.substr(x + 1));
  return true;
}

std::string fmt_float(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}

json request_object(const ImageRequest& r) {
  return {{"prompt", r.prompt},
          {"negative_prompt", r.negative_prompt},
          {"n", r.n},
          {"size", std::to_string(r.width) + "x" + std::to_string(r.height)},
          {"steps", r.steps},
          {"sampler", r.sampler},
          {"cfg_scale", std::stod(fmt_float(r.cfg_scale))},
          {"seed", r.seed},
          {"refine_every", r.refine_every}};
}

// request_object plus the fields only some requests have (so txt2img answers keep their shape).
json request_json(const ImageRequest& r) {
  json j = request_object(r);
  if (r.karras) j["karras"] = true;
  if (r.cfg_sigma_lo >= 0) j["cfg_interval"] = {r.cfg_sigma_lo, r.cfg_sigma_hi};
  if (r.cache.mode != CacheMode::kOff) j["cache"] = cache_spec_string(r.cache);
  if (r.init_image) {
    j["init_image"] = true;
    j["strength"] = std::stod(fmt_float(static_cast<float>(r.strength)));
  }
  if (r.mask) j["mask"] = true;
  return j;
}

// Caller holds job.mu.
json job_object_locked(const Job& job) {
  json j = {{"id", job.id},
            {"object", "job"},
            {"state", job_state_name(job.state)},
            {"step", job.step},
            {"steps", job.request.steps},
            {"created", job.created_unix},
            {"request", request_json(job.request)}};
  std::vector<int64_t> seeds(job.request.n, job.request.seed);
  if (job.output) seeds = job.output->seeds;
  j["seeds"] = seeds;
  json t = {{"queue_s", job.queue_s}, {"run_s", job.run_s}};
  if (job.state == JobState::kQueued) {
    t["queue_s"] = std::chrono::duration<double>(Clock::now() - job.created).count();
  } else if (job.state == JobState::kRunning) {
    t["queue_s"] = std::chrono::duration<double>(job.started - job.created).count();
    t["run_s"] = std::chrono::duration<double>(Clock::now() - job.started).count();
  }
  if (job.output) {
    t["encode_s"] = job.output->timings.encode_s;
    t["denoise_s"] = job.output->timings.denoise_s;
    j["model_evaluations"] = job.output->model_evaluations;
    if (job.request.cache.mode != CacheMode::kOff)
      j["cache"] = {{"spec", cache_spec_string(job.request.cache)},
                    {"reused_calls", job.output->cache_reused_calls},
                    {"backbone_blocks_run", job.output->backbone_blocks_run},
                    {"backbone_blocks_total", job.output->backbone_blocks_total}};
  }
  t["total_s"] = t["queue_s"].get<double>() + t["run_s"].get<double>();
  j["timings"] = t;
  if (job.state == JobState::kSucceeded) {
    json urls = json::array();
    for (int k = 0; k < job.request.n; ++k)
      urls.push_back("/v1/jobs/" + job.id + "/images/" + std::to_string(k) + ".png");
    j["images"] = urls;
  }
  if (!job.error.is_ok())
    j["error"] = {{"code", status_code_name(job.error.code())}, {"message", job.error.message()}};
  if (job.cancel.load() && !is_final(job.state)) j["cancel_requested"] = true;
  return j;
}

}  // namespace

std::variant<ParsedGeneration, ApiError> parse_generation(const std::string& body,
                                                          const ImageEngine& engine,
                                                          const ParseOptions& options) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("", "the request body is not valid JSON");
  if (!j.is_object()) return bad("", "the request body must be a JSON object");
  return parse_generation_object(j, engine, options);
}

std::variant<ParsedGeneration, ApiError> parse_generation_object(const nlohmann::json& j,
                                                                 const ImageEngine& engine,
                                                                 const ParseOptions& options) {
  const EngineInfo& info = engine.info();
  static const std::set<std::string> known = {
      "prompt",  "n",         "size",  "response_format", "negative_prompt", "steps",
      "sampler", "cfg_scale", "seed",  "refine_every",    "model",           "user",
      "quality", "style",     "width", "height",          "karras",          "cfg_interval",
      "cache"};
  static const std::set<std::string> known_img2img = {"image", "mask", "strength"};
  for (const auto& [k, v] : j.items())
    if (!known.count(k) && !(options.img2img && known_img2img.count(k)))
      return bad(k, "unknown field '" + k + "'" +
                        (known_img2img.count(k) ? " (img2img fields belong to "
                                                  "/v1/images/edits and /v1/jobs)"
                                                : ""));
  ParsedGeneration out;
  ImageRequest& r = out.request;
  ApiError err;
  if (!j.contains("prompt") || j["prompt"].is_null()) return bad("prompt", "'prompt' is required");
  if (!get_string(j, "prompt", 16384, &r.prompt, &err)) return err;
  if (r.prompt.empty()) return bad("prompt", "'prompt' must not be empty");
  if (!get_string(j, "negative_prompt", 16384, &r.negative_prompt, &err)) return err;
  if (!get_string(j, "response_format", 64, &out.response_format, &err)) return err;
  if (out.response_format != "b64_json")
    return bad("response_format",
               "'response_format' must be \"b64_json\" (\"url\" is not "
               "supported; use POST /v1/jobs for image URLs)");
  std::string model;
  if (!get_string(j, "model", 256, &model, &err)) return err;
  int64_t v = 0;
  v = 1;
  if (!get_int(j, "n", 1, info.max_n, &v, &err)) return err;
  r.n = static_cast<int>(v);
  r.width = options.default_width > 0 ? options.default_width : info.width;
  r.height = options.default_height > 0 ? options.default_height : info.height;
  std::string size;
  if (!get_string(j, "size", 32, &size, &err)) return err;
  if (!size.empty() && !parse_size(size, &r.width, &r.height))
    return bad("size", "'size' must look like \"WIDTHxHEIGHT\", got \"" + size + "\"");
  v = r.width;
  if (!get_int(j, "width", 1, info.max_side, &v, &err)) return err;
  r.width = static_cast<int>(v);
  v = r.height;
  if (!get_int(j, "height", 1, info.max_side, &v, &err)) return err;
  r.height = static_cast<int>(v);
  const std::string size_field = j.contains("size") ? "size" : "width";
  for (int side : {r.width, r.height}) {
    if (side < info.stride || side > info.max_side || side % info.stride != 0)
      return bad(size_field, "image sides must be multiples of " + std::to_string(info.stride) +
                                 " in [" + std::to_string(info.stride) + ", " +
                                 std::to_string(info.max_side) + "], got " +
                                 std::to_string(r.width) + "x" + std::to_string(r.height));
  }
  if (!info.other_sizes && (r.width != info.width || r.height != info.height))
    return bad(size_field, "this model only generates " + std::to_string(info.width) + "x" +
                               std::to_string(info.height) + " images");
  if (static_cast<int64_t>(r.n) * r.width * r.height > (int64_t{1} << 24))
    return bad("n", "n x width x height exceeds the per-request limit of 16777216 pixels");
  v = info.default_steps;
  if (!get_int(j, "steps", 1, info.max_steps, &v, &err)) return err;
  r.steps = static_cast<int>(v);
  r.sampler = info.default_sampler;
  if (!get_string(j, "sampler", 64, &r.sampler, &err)) return err;
  if (std::find(info.samplers.begin(), info.samplers.end(), r.sampler) == info.samplers.end()) {
    std::string names;
    for (const auto& s : info.samplers) names += (names.empty() ? "" : ", ") + s;
    return bad("sampler", "unknown sampler '" + r.sampler + "' (available: " + names + ")");
  }
  r.cfg_scale = info.default_cfg_scale;
  if (j.contains("cfg_scale") && !j["cfg_scale"].is_null()) {
    const json& c = j["cfg_scale"];
    const double d = c.is_number() ? c.get<double>() : -1;
    if (!c.is_number() || !std::isfinite(d) || d < 0 || d > 100)
      return bad("cfg_scale", "'cfg_scale' must be a number in [0, 100], got " + c.dump());
    r.cfg_scale = static_cast<float>(d);
  }
  v = -1;
  if (!get_int(j, "seed", -1, std::numeric_limits<int64_t>::max(), &v, &err)) return err;
  if (v < 0) {
    static thread_local std::mt19937_64 rng(std::random_device{}());
    v = static_cast<int64_t>(rng() & 0xffffffffull);  // 32 bits, as torch.manual_seed uses them
  }
  r.seed = v;
  v = info.default_refine_every;
  if (!get_int(j, "refine_every", 0, 1000, &v, &err)) return err;
  r.refine_every = static_cast<int>(v);
  if (j.contains("karras") && !j["karras"].is_null()) {
    if (!j["karras"].is_boolean())
      return bad("karras", "'karras' must be true or false, got " + j["karras"].dump());
    r.karras = j["karras"].get<bool>();
    if (r.karras && (r.sampler == "ddim" || r.sampler == "ddpm"))
      return bad("karras", "Karras sigmas apply to every sampler except ddim and ddpm");
  }
  if (j.contains("cfg_interval") && !j["cfg_interval"].is_null()) {
    const json& c = j["cfg_interval"];
    const bool pair = c.is_array() && c.size() == 2 && c[0].is_number() && c[1].is_number();
    const double lo = pair ? c[0].get<double>() : -1, hi = pair ? c[1].get<double>() : -1;
    if (!pair || !std::isfinite(lo) || !std::isfinite(hi) || lo < 0 || lo > hi)
      return bad(
          "cfg_interval",
          "'cfg_interval' must be [sigma_lo, sigma_hi] with 0 <= sigma_lo <= sigma_hi, got " +
              c.dump());
    if (r.cfg_scale == 1.0f)
      return bad("cfg_interval", "'cfg_interval' needs guidance ('cfg_scale' != 1)");
    r.cfg_sigma_lo = lo;
    r.cfg_sigma_hi = hi;
  }
  if (j.contains("cache") && !j["cache"].is_null()) {
    if (!j["cache"].is_string())
      return bad("cache",
                 "'cache' must be a string (off | on | step:THRESH[,START,END] | "
                 "block:F,B,THRESH[,START,END]), got " +
                     j["cache"].dump());
    auto spec = parse_cache_spec(j["cache"].get<std::string>(), "'cache'");
    if (!spec.is_ok()) return bad("cache", spec.status().message());
    r.cache = *spec;
  }
  if (options.img2img && j.contains("strength") && !j["strength"].is_null()) {
    const json& c = j["strength"];
    const double d = c.is_number() ? c.get<double>() : -1;
    if (!c.is_number() || !std::isfinite(d) || d < 0 || d > 1)
      return bad("strength", "'strength' must be a number in [0, 1], got " + c.dump());
    r.strength = d;
  }
  if (!options.defer_engine_check)
    if (auto e = engine_check(engine, r)) return *e;
  return out;
}

std::optional<ApiError> engine_check(const ImageEngine& engine, const ImageRequest& r) {
  const Status st = engine.validate(r);
  if (st.is_ok()) return std::nullopt;
  ApiError e = bad(st.message().rfind("cache", 0) == 0 ? "cache" : "", st.message());
  if (st.code() == StatusCode::kResourceExhausted) {  // over the server's memory cap
    e.status = 413;
    e.param = "n";
    e.type = "resource_limit_error";
  }
  return e;
}

std::string error_json(const ApiError& e) {
  json j = {{"error",
             {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.status}}}};
  return j.dump();
}

std::string job_json(const Job& job) {
  std::lock_guard<std::mutex> lock(job.mu);
  return job_object_locked(job).dump();
}

std::string progress_json(const Job& job) {
  std::lock_guard<std::mutex> lock(job.mu);
  return json{{"id", job.id},
              {"state", job_state_name(job.state)},
              {"step", job.step},
              {"steps", job.request.steps}}
      .dump();
}

std::string images_json(const Job& job, const std::vector<std::string>& pngs) {
  std::lock_guard<std::mutex> lock(job.mu);
  json data = json::array();
  for (const auto& p : pngs) data.push_back({{"b64_json", base64_encode(p)}});
  json d = job_object_locked(job);
  d.erase("images");
  return json{{"created", job.created_unix}, {"data", data}, {"duet", d}}.dump();
}

std::string models_json(const EngineInfo& info) {
  json m = {{"id", info.model},
            {"object", "model"},
            {"owned_by", "duet"},
            {"duet",
             {{"channels", info.channels},
              {"default_size", std::to_string(info.width) + "x" + std::to_string(info.height)},
              {"size_multiple", info.stride},
              {"other_sizes", info.other_sizes},
              {"max_side", info.max_side},
              {"max_steps", info.max_steps},
              {"max_n", info.max_n},
              {"samplers", info.samplers},
              {"defaults",
               {{"sampler", info.default_sampler},
                {"steps", info.default_steps},
                {"cfg_scale", info.default_cfg_scale},
                {"refine_every", info.default_refine_every}}}}}};
  // The machine the figures come from: CPU, dispatch and the engine's thread choice.
  json system = json::object();
  if (!info.cpu_json.empty()) system["cpu"] = json::parse(info.cpu_json, nullptr, false);
  system["threads"] = info.threads;
  m["duet"]["system"] = system;
  return json{{"object", "list"}, {"data", json::array({m})}}.dump();
}

std::string base64_encode(const std::string& in) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += tbl[(v >> 6) & 63];
    out += tbl[v & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out += tbl[v >> 18];
    out += tbl[(v >> 12) & 63];
    out += i + 1 < in.size() ? tbl[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> job_png(Job& job, int k) {
  std::lock_guard<std::mutex> lock(job.mu);
  if (!job.output || k < 0 || k >= job.output->n) return not_found("no such image");
  if (job.pngs.empty()) job.pngs.resize(job.output->n);
  if (job.pngs[k].empty()) {
    const ImageOutput& o = *job.output;
    const size_t img = static_cast<size_t>(o.channels) * o.height * o.width;
    DUET_ASSIGN_OR_RETURN(PngImage png,
                          image_from_chw(o.pixels.data() + k * img, o.channels, o.height, o.width));
    if (k < static_cast<int>(o.parameters.size()))
      png.text.push_back({"parameters", format_parameters(o.parameters[k])});
    DUET_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, encode_png(png));
    job.pngs[k].assign(bytes.begin(), bytes.end());
  }
  return job.pngs[k];
}

}  // namespace duet::serve
