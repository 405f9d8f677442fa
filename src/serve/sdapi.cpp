#include "serve/sdapi.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "serve/openai_edits.h"

namespace duet::serve {
namespace {

using nlohmann::json;

// A1111's names for duet's samplers (A1111 label, then aliases as its /samplers lists them).
// Only exact equivalents are mapped: A1111's "DPM++ 2S a" is ancestral and its "DPM++ 3M" is an
// SDE sampler, so duet's dpmpp_2s / dpmpp_3m keep duet-style labels.
struct SamplerName {
  const char* label;
  const char* duet;
  std::vector<const char*> aliases;
};
const std::vector<SamplerName>& sampler_table() {
  static const std::vector<SamplerName> t = {
      {"DPM++ 2M", "dpmpp_2m", {"k_dpmpp_2m"}},
      {"DPM++ 2M SDE", "dpmpp_2m_sde", {"k_dpmpp_2m_sde"}},
      {"Euler a", "euler_a", {"k_euler_a", "k_euler_ancestral"}},
      {"Euler", "euler", {"k_euler"}},
      {"LMS", "lms", {"k_lms"}},
      {"Heun", "heun", {"k_heun"}},
      {"DPM2", "dpm2", {"k_dpm_2"}},
      {"DDIM", "ddim", {"ddim"}},
      {"DDPM", "ddpm", {"ddpm"}},
      {"UniPC", "unipc", {"unipc"}},
      {"DPM++ 2S", "dpmpp_2s", {}},
      {"DPM++ 3M", "dpmpp_3m", {}},
      {"DPM-Solver 2M", "dpmsolver_2m", {}},
      {"DPM-Solver 3S", "dpmsolver_3s", {}},
  };
  return t;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Is `v` what a client sends for an option it does not use (null, false, 0, -1, "", [], {})?
bool is_unset(const json& v) {
  if (v.is_null()) return true;
  if (v.is_boolean()) return !v.get<bool>();
  if (v.is_number()) return v.get<double>() == 0 || v.get<double>() == -1;
  if (v.is_string()) return v.get<std::string>().empty();
  return v.empty();
}

// Fields A1111 clients send with these defaults, which change nothing here.
bool is_harmless_default(const std::string& k, const json& v, const json& body) {
  static const std::map<std::string, json> defaults = {
      {"s_noise", 1},
      {"mask_blur", 4},
      {"mask_blur_x", 4},
      {"mask_blur_y", 4},
      {"inpaint_full_res", 1},
      {"initial_noise_multiplier", 1},
      {"send_images", true},
      {"override_settings_restore_afterwards", true},
      {"hr_scale", 2},
      {"do_not_save_samples", true},
      {"do_not_save_grid", true},
      {"image_cfg_scale", 1.5}};
  if (auto it = defaults.find(k); it != defaults.end() && it->second == v) return true;
  if (k == "inpaint_full_res" && v.is_boolean()) return v.get<bool>();
  if (k == "seed_resize_from_h" || k == "seed_resize_from_w" || k == "subseed") return true;
  // Hires-fix settings only matter with enable_hr (reported itself when set).
  const bool hr =
      body.contains("enable_hr") && body["enable_hr"].is_boolean() && body["enable_hr"].get<bool>();
  if (!hr &&
      (k.rfind("hr_", 0) == 0 || k.rfind("firstphase_", 0) == 0 || k == "denoising_strength"))
    return true;
  return false;
}

// Maps an error of the generation parser back onto A1111's field names.
ApiError rename(ApiError e) {
  static const std::map<std::string, std::string> names = {{"n", "batch_size"},
                                                           {"sampler", "sampler_name"},
                                                           {"strength", "denoising_strength"},
                                                           {"size", "width"},
                                                           {"image", "init_images"}};
  if (auto it = names.find(e.param); it != names.end()) {
    const std::string from = "'" + it->first + "'", to = "'" + it->second + "'";
    for (size_t p = 0; (p = e.message.find(from, p)) != std::string::npos; p += to.size())
      e.message.replace(p, from.size(), to);
    e.param = it->second;
  }
  return e;
}

bool get_count(const json& j, const char* key, int lo, int hi, int* out, ApiError* err) {
  if (!j.contains(key) || j[key].is_null()) return true;
  const json& v = j[key];
  const double d = v.is_number() ? v.get<double>() : -1e300;
  // The range test comes first: casting a double outside int's range is undefined.
  if (!v.is_number() || !std::isfinite(d) || d < lo || d > hi || d != std::floor(d)) {
    *err = bad(key, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) +
                        ", " + std::to_string(hi) + "], got " + v.dump());
    return false;
  }
  *out = static_cast<int>(d);
  return true;
}

std::variant<SdRequest, ApiError> parse_sd(const std::string& body, const ImageEngine& engine,
                                           bool img2img) {
  const EngineInfo& info = engine.info();
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("", "the request body is not valid JSON");
  if (!j.is_object()) return bad("", "the request body must be a JSON object");
  SdRequest out;
  out.img2img = img2img;
  static const std::set<std::string> honoured = {
      "prompt",        "negative_prompt", "steps",       "cfg_scale",  "seed",
      "batch_size",    "n_iter",          "width",       "height",     "sampler_name",
      "sampler_index", "scheduler",       "send_images", "save_images"};
  static const std::set<std::string> honoured_img2img = {"init_images", "denoising_strength",
                                                         "mask", "inpainting_mask_invert"};
  for (const auto& [k, v] : j.items()) {
    if (honoured.count(k) || (img2img && honoured_img2img.count(k))) continue;
    if (is_unset(v) || is_harmless_default(k, v, j)) continue;
    out.ignored.push_back(k + ": not supported by duet (ignored)");
  }
  if (j.contains("save_images") && j["save_images"].is_boolean() && j["save_images"].get<bool>())
    out.ignored.push_back("save_images: duet does not save images on the server (ignored)");
  if (j.contains("send_images") && !j["send_images"].is_null()) {
    if (!j["send_images"].is_boolean())
      return bad("send_images", "'send_images' must be true or false");
    out.send_images = j["send_images"].get<bool>();
  }
  ApiError err;
  int batch = 1, iters = 1;
  if (!get_count(j, "batch_size", 1, info.max_n, &batch, &err)) return err;
  if (!get_count(j, "n_iter", 1, info.max_n, &iters, &err)) return err;
  if (batch * iters > info.max_n)
    return bad("n_iter", "batch_size x n_iter must be at most " + std::to_string(info.max_n));

  // Sampler and scheduler.
  std::string sampler = info.default_sampler;
  for (const char* key : {"sampler_index", "sampler_name"})  // sampler_name wins
    if (j.contains(key) && !j[key].is_null()) {
      if (!j[key].is_string()) return bad(key, std::string("'") + key + "' must be a string");
      if (!j[key].get<std::string>().empty()) sampler = j[key].get<std::string>();
    }
  const std::string sampler_field = j.contains("sampler_name") && j["sampler_name"].is_string()
                                        ? "sampler_name"
                                    : j.contains("sampler_index") ? "sampler_index"
                                                                  : "sampler_name";
  auto mapped = sd_sampler(sampler, info);
  if (auto* e = std::get_if<ApiError>(&mapped)) {
    e->param = sampler_field;
    return *e;
  }
  SdSampler sm = std::get<SdSampler>(mapped);
  out.sampler_name = sampler;
  out.scheduler = sm.karras ? "Karras" : "Automatic";
  if (j.contains("scheduler") && !j["scheduler"].is_null()) {
    if (!j["scheduler"].is_string()) return bad("scheduler", "'scheduler' must be a string");
    const std::string s = lower(j["scheduler"].get<std::string>());
    if (s == "karras") {
      sm.karras = true;
      out.scheduler = "Karras";
    } else if (!s.empty() && s != "automatic") {
      out.ignored.push_back("scheduler: '" + j["scheduler"].get<std::string>() +
                            "' is not available (duet has Automatic and Karras); Automatic used");
    }
  }
  if (sm.karras && (sm.duet == "ddim" || sm.duet == "ddpm"))
    return bad(j.contains("scheduler") ? "scheduler" : sampler_field,
               "Karras sigmas apply to every sampler except DDIM and DDPM");

  // The duet request of the first iteration.
  json g = json::object();
  for (const char* k :
       {"prompt", "negative_prompt", "steps", "cfg_scale", "seed", "width", "height"})
    if (j.contains(k) && !j[k].is_null()) g[k] = j[k];
  if (!g.contains("prompt")) g["prompt"] = "";
  g["n"] = batch;
  g["sampler"] = sm.duet;
  if (sm.karras) g["karras"] = true;
  std::variant<ParsedGeneration, ApiError> parsed;
  std::string images[2];
  if (img2img) {
    const json& init = j.contains("init_images") ? j["init_images"] : json();
    if (!init.is_array() || init.empty())
      return bad("init_images", "'init_images' must be a non-empty array of base64 PNG images");
    if (!init[0].is_string() || !base64_decode(init[0].get<std::string>(), &images[0]))
      return bad("init_images", "'init_images'[0] must be a base64-encoded PNG (a string)");
    if (init.size() > 1)
      out.ignored.push_back("init_images: only the first of " + std::to_string(init.size()) +
                            " images is used");
    if (j.contains("denoising_strength") && !j["denoising_strength"].is_null())
      g["strength"] = j["denoising_strength"];
    Img2ImgInput in;
    in.image = &images[0];
    in.image_field = "init_images";
    in.mask_rule = MaskRule::kWhiteRepaints;
    if (j.contains("mask") && !j["mask"].is_null()) {
      if (!j["mask"].is_string() || !base64_decode(j["mask"].get<std::string>(), &images[1]))
        return bad("mask", "'mask' must be a base64-encoded PNG (a string)");
      in.mask = &images[1];
      const json& inv = j.contains("inpainting_mask_invert") ? j["inpainting_mask_invert"] : json();
      in.invert_mask =
          (inv.is_number() && inv.get<double>() == 1) || (inv.is_boolean() && inv.get<bool>());
    }
    parsed = parse_img2img(g, in, engine);
  } else {
    parsed = parse_generation_object(g, engine);
  }
  if (auto* e = std::get_if<ApiError>(&parsed)) return rename(*e);
  ImageRequest first = std::get<ParsedGeneration>(parsed).request;
  for (int k = 0; k < iters; ++k) {
    ImageRequest r = first;
    r.seed = first.seed + static_cast<int64_t>(k) * batch;
    out.iterations.push_back(std::move(r));
  }

  // The request echoed back with what was used filled in.
  json p = j;
  if (img2img) {
    p["init_images"] = nullptr;
    p["mask"] = nullptr;
    p["denoising_strength"] = first.strength;
  }
  p["prompt"] = first.prompt;
  p["negative_prompt"] = first.negative_prompt;
  p["steps"] = first.steps;
  p["cfg_scale"] = first.cfg_scale;
  if (!p.contains("seed") || p["seed"].is_null()) p["seed"] = -1;
  p["width"] = first.width;
  p["height"] = first.height;
  p["batch_size"] = batch;
  p["n_iter"] = iters;
  p["sampler_name"] = sampler;
  p["scheduler"] = out.scheduler;
  out.parameters = p.dump();
  return out;
}

std::string timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d%H%M%S", &tm);
  return buf;
}

}  // namespace

std::variant<SdSampler, ApiError> sd_sampler(const std::string& name, const EngineInfo& info) {
  std::string n = lower(name);
  SdSampler s;
  const std::string suffix = " karras";
  if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0) {
    s.karras = true;
    n.resize(n.size() - suffix.size());
  }
  for (const SamplerName& e : sampler_table()) {
    bool match = lower(e.label) == n || e.duet == n;
    for (const char* a : e.aliases) match |= n == a;
    if (match) s.duet = e.duet;
  }
  if (s.duet.empty() ||
      std::find(info.samplers.begin(), info.samplers.end(), s.duet) == info.samplers.end()) {
    std::string names;
    for (const SamplerName& e : sampler_table())
      if (std::find(info.samplers.begin(), info.samplers.end(), e.duet) != info.samplers.end())
        names += (names.empty() ? "" : ", ") + std::string(e.label);
    return bad("sampler_name",
               "unknown sampler '" + name + "' (available: " + names + "; GET /sdapi/v1/samplers)");
  }
  return s;
}

std::variant<SdRequest, ApiError> parse_sd_txt2img(const std::string& body,
                                                   const ImageEngine& engine) {
  return parse_sd(body, engine, false);
}

std::variant<SdRequest, ApiError> parse_sd_img2img(const std::string& body,
                                                   const ImageEngine& engine) {
  return parse_sd(body, engine, true);
}

std::string sd_images_json(const SdRequest& r, const std::vector<SyncResult>& results,
                           const EngineInfo& info) {
  json images = json::array(), seeds = json::array(), infotexts = json::array(),
       prompts = json::array(), negatives = json::array(), jobs = json::array();
  for (const SyncResult& res : results) {
    std::shared_ptr<const ImageOutput> output;
    {
      std::lock_guard<std::mutex> lock(res.job->mu);
      output = res.job->output;
    }
    jobs.push_back(res.job->id);
    for (size_t k = 0; k < res.pngs.size(); ++k) {
      if (r.send_images) images.push_back(base64_encode(res.pngs[k]));
      seeds.push_back(output && k < output->seeds.size() ? output->seeds[k]
                                                         : res.job->request.seed);
      infotexts.push_back(output && k < output->parameters.size()
                              ? format_parameters(output->parameters[k])
                              : std::string());
      prompts.push_back(res.job->request.prompt);
      negatives.push_back(res.job->request.negative_prompt);
    }
  }
  const ImageRequest& q = r.iterations.front();
  json subseeds = json::array();
  for (size_t i = 0; i < seeds.size(); ++i) subseeds.push_back(-1);
  json inf = {{"prompt", q.prompt},
              {"all_prompts", prompts},
              {"negative_prompt", q.negative_prompt},
              {"all_negative_prompts", negatives},
              {"seed", q.seed},
              {"all_seeds", seeds},
              {"subseed", -1},
              {"all_subseeds", subseeds},
              {"subseed_strength", 0},
              {"width", q.width},
              {"height", q.height},
              {"sampler_name", r.sampler_name},
              {"scheduler", r.scheduler},
              {"cfg_scale", q.cfg_scale},
              {"steps", q.steps},
              {"batch_size", q.n},
              {"n_iter", r.iterations.size()},
              {"restore_faces", false},
              {"face_restoration_model", nullptr},
              {"sd_model_name", info.model},
              {"sd_model_hash", nullptr},
              {"sd_vae_name", nullptr},
              {"sd_vae_hash", nullptr},
              {"seed_resize_from_w", -1},
              {"seed_resize_from_h", -1},
              {"denoising_strength", r.img2img ? json(q.strength) : json(nullptr)},
              {"extra_generation_params", json::object()},
              {"index_of_first_image", 0},
              {"infotexts", infotexts},
              {"styles", json::array()},
              {"job_timestamp", timestamp()},
              {"clip_skip", 1},
              {"is_using_inpainting_conditioning", false},
              {"version", "duet 0.1"},
              {"duet",
               {{"sampler", q.sampler},
                {"karras", q.karras},
                {"mask", static_cast<bool>(q.mask)},
                {"ignored", r.ignored},
                {"jobs", jobs}}}};
  return json{{"images", images}, {"parameters", json::parse(r.parameters)}, {"info", inf.dump()}}
      .dump();
}

std::string sd_samplers_json(const EngineInfo& info) {
  json out = json::array();
  for (const SamplerName& e : sampler_table()) {
    if (std::find(info.samplers.begin(), info.samplers.end(), e.duet) == info.samplers.end())
      continue;
    json aliases = json::array({e.duet});
    for (const char* a : e.aliases)
      if (std::string(a) != e.duet) aliases.push_back(a);
    json options = json::object();
    out.push_back({{"name", e.label}, {"aliases", aliases}, {"options", options}});
  }
  return out.dump();
}

std::string sd_schedulers_json() {
  return json::array({{{"name", "automatic"},
                       {"label", "Automatic"},
                       {"aliases", nullptr},
                       {"default_rho", -1},
                       {"need_inner_model", false}},
                      {{"name", "karras"},
                       {"label", "Karras"},
                       {"aliases", nullptr},
                       {"default_rho", 7.0},
                       {"need_inner_model", false}}})
      .dump();
}

std::string sd_models_json(const EngineInfo& info) {
  return json::array({{{"title", info.model},
                       {"model_name", info.model},
                       {"hash", nullptr},
                       {"sha256", nullptr},
                       {"filename", info.model},
                       {"config", nullptr}}})
      .dump();
}

std::string sd_options_json(const EngineInfo& info) {
  return json{{"sd_model_checkpoint", info.model},
              {"sd_checkpoint_hash", nullptr},
              {"sd_vae", "None"},
              {"samples_format", "png"},
              {"CLIP_stop_at_last_layers", 1},
              {"eta_ddim", 0},
              {"eta_ancestral", 1},
              {"duet",
               {{"default_size", std::to_string(info.width) + "x" + std::to_string(info.height)},
                {"default_sampler", info.default_sampler},
                {"default_steps", info.default_steps},
                {"default_cfg_scale", info.default_cfg_scale}}}}
      .dump();
}

std::optional<ApiError> sd_set_options(const std::string& body, const EngineInfo& info) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("", "the options must be a JSON object");
  if (j.contains("sd_model_checkpoint") && !j["sd_model_checkpoint"].is_null()) {
    const json& m = j["sd_model_checkpoint"];
    if (!m.is_string() || m.get<std::string>() != info.model)
      return bad("sd_model_checkpoint", "this server serves one model, '" + info.model +
                                            "' (GET /sdapi/v1/sd-models), got " + m.dump());
  }
  return std::nullopt;
}

std::string sd_progress_json(const std::vector<std::shared_ptr<Job>>& active) {
  int count = 0, step = 0, steps = 0;
  double progress = 0, eta = 0;
  bool first = true;
  for (const auto& job : active) {
    if (job->api != "sdapi") continue;
    ++count;
    if (!first) continue;
    first = false;
    std::lock_guard<std::mutex> lock(job->mu);
    step = job->step;
    steps = job->request.steps;
    if (job->state == JobState::kRunning && steps > 0) {
      progress = static_cast<double>(step) / steps;
      const double run = std::chrono::duration<double>(Clock::now() - job->started).count();
      eta = step > 0 ? run * (steps - step) / step : 0;
    }
  }
  json state = {{"skipped", false},      {"interrupted", false},         {"job", ""},
                {"job_count", count},    {"job_timestamp", timestamp()}, {"job_no", 0},
                {"sampling_step", step}, {"sampling_steps", steps}};
  return json{{"progress", progress},
              {"eta_relative", eta},
              {"state", state},
              {"current_image", nullptr},
              {"textinfo", count ? json("running") : json(nullptr)}}
      .dump();
}

}  // namespace duet::serve
