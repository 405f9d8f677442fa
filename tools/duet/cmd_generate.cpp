// duet generate -p PROMPT [options] — text-to-image (and img2img) with a duet model; writes PNGs
// with stable-diffusion-webui style `parameters` metadata. See docs/generate.md.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend_option.h"
#include "bench/flops.h"
#include "command.h"
#include "diffusion/sampler.h"
#include "duet/model.h"
#include "duet/pipeline.h"
#include "duet/png.h"
#include "precision_option.h"

namespace {

using namespace duet;
namespace fs = std::filesystem;

struct Options {
  std::string model = "models/fashion-duet";
  std::vector<std::string> prompts;
  std::string negative_prompt;
  int n = 1;
  int steps = 20;
  std::string sampler = "dpmpp_2m";
  bool karras = false;
  std::string cfg_interval;   // "LO,HI"
  std::string cache = "off";  // duet/backbone_cache.h spec
  float cfg_scale = 4.0f;
  const CLI::Option* cfg_scale_opt = nullptr;  // not given on the command line: the model's default
  int64_t seed = -1;
  std::string rng = "torch";
  int refine_every = -1;
  std::string refine_steps;
  std::string refine;
  int width = 0, height = 0;
  std::string init_image;
  double strength = 0.75;
  double max_memory_mb = 0;  // --max-memory (0 = no cap)
  std::string output;
  std::string output_dir;
  bool grid = false;
  bool quiet = false;
  bool json = false;
  int threads = 0;
  std::string precision;        // --precision (empty: the checkpoint's, else f32)
  std::string backend = "cpu";  // --backend
  int bit_depth = 8;
};

std::atomic<bool> g_cancel{false};
extern "C" void on_sigint(int) { g_cancel.store(true); }

std::string fmt_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

int fail(const std::string& msg, int code = 1) {
  std::fprintf(stderr, "error: %s\n", msg.c_str());
  return code;
}

// Can `path` be created or overwritten? (checked before spending time on sampling)
std::string check_writable(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) return path.string() + " is a directory";
  fs::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) return "output directory " + dir.string() + " does not exist";
  if (fs::exists(path, ec) ? access(path.c_str(), W_OK) != 0 : access(dir.c_str(), W_OK) != 0)
    return "cannot write " + path.string() + " (permission denied)";
  return "";
}

std::string with_index(const fs::path& p, int i) {
  fs::path stem = p.parent_path() / p.stem();
  const std::string ext = p.has_extension() ? p.extension().string() : ".png";
  return stem.string() + "-" + std::to_string(i) + ext;
}

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  void update(const StepProgress& s) {
    if (!enabled_) return;
    const double rate = s.elapsed_s > 0 ? s.call / s.elapsed_s : 0.0;
    const double eta = rate > 0 ? (s.total - s.call) / rate : 0.0;
    const int width = 24;
    const int filled = s.total > 0 ? s.call * width / s.total : width;
    char bar[width + 1];
    for (int i = 0; i < width; ++i) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    std::fprintf(stderr, "\rstep %d/%d [%s] %.2f it/s  ETA %.1fs%s   ", s.call, s.total, bar, rate,
                 eta, s.refined ? "  refine" : "       ");
    std::fflush(stderr);
    drawn_ = true;
  }
  void finish() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  bool enabled_;
  bool drawn_ = false;
};

int run_generate(Options o) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  // ---- argument checks that need no model ----
  if (o.prompts.empty()) return fail("no prompt given (-p)", 2);
  if (o.prompts.size() > 1 && o.n == 1) o.n = static_cast<int>(o.prompts.size());
  if (o.n < 1 || o.n > kMaxImages)
    return fail("-n must be in [1, " + std::to_string(kMaxImages) + "], got " + std::to_string(o.n),
                2);
  if (o.steps < 1 || o.steps > 1000)
    return fail("--steps must be in [1, 1000], got " + std::to_string(o.steps), 2);
  const auto& names = diffusion::sampler_names();
  if (std::find(names.begin(), names.end(), o.sampler) == names.end()) {
    std::string list;
    for (const auto& s : names) list += (list.empty() ? "" : ", ") + s;
    return fail("unknown sampler '" + o.sampler + "' (available: " + list + ")", 2);
  }
  if (o.width < 0 || o.height < 0) return fail("--width/--height must be positive", 2);
  if (!o.output.empty() && !o.output_dir.empty())
    return fail("give either -o or --output-dir, not both", 2);
  if (o.strength < 0 || o.strength > 1 || std::isnan(o.strength))
    return fail("--strength must be in [0, 1], got " + fmt_num(o.strength), 2);

  GenerateParams p;
  p.prompts = o.prompts;
  p.negative_prompt = o.negative_prompt;
  p.n = o.n;
  p.steps = o.steps;
  p.sampler = o.sampler;
  p.karras = o.karras;
  p.cfg_scale = o.cfg_scale;
  if (!o.cfg_interval.empty()) {
    double lo = 0, hi = 0;
    char tail = 0;
    if (std::sscanf(o.cfg_interval.c_str(), "%lf,%lf%c", &lo, &hi, &tail) != 2 ||
        !std::isfinite(lo) || !std::isfinite(hi) || lo < 0 || lo > hi)
      return fail("--cfg-interval must be SIGMA_LO,SIGMA_HI with 0 <= SIGMA_LO <= SIGMA_HI, got '" +
                      o.cfg_interval + "'",
                  2);
    p.cfg_sigma_lo = lo;
    p.cfg_sigma_hi = hi;
  }
  {
    auto spec = parse_cache_spec(o.cache, "--cache");
    if (!spec.is_ok()) return fail(spec.status().message(), 2);
    p.cache = *spec;
  }
  p.seed = o.seed;
  p.rng = o.rng;
  p.width = o.width;
  p.height = o.height;
  p.strength = o.strength;
  p.png_bit_depth = o.bit_depth;
  if (!o.refine.empty()) {
    p.refine = o.refine == "all" ? RefineMode::kAll : RefineMode::kNone;
  } else if (!o.refine_steps.empty()) {
    auto rs = parse_refine_steps(o.refine_steps);
    if (!rs) return fail("--refine-steps: " + rs.status().message(), 2);
    p.refine = RefineMode::kSteps;
    p.refine_steps = *rs;
  } else {
    if (o.refine_every < -1) return fail("--refine-every must be >= 0", 2);
    p.refine_every = o.refine_every;
  }

  // Output files (checked before loading anything).
  std::vector<std::string> files;
  std::string grid_file;
  const bool one_file = o.n == 1 || o.grid;
  if (!o.output_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o.output_dir, ec);
    if (!fs::is_directory(o.output_dir, ec))
      return fail("cannot create output directory " + o.output_dir, 2);
  } else {
    const fs::path out = o.output.empty() ? fs::path("duet-output.png") : fs::path(o.output);
    if (one_file) {
      files.push_back(out.string());
    } else {
      for (int i = 0; i < o.n; ++i) files.push_back(with_index(out, i));
    }
    for (const auto& f : files)
      if (auto err = check_writable(f); !err.empty()) return fail(err, 2);
  }

  // Init image: must be readable before the model is loaded.
  PngImage init;
  if (!o.init_image.empty()) {
    auto img = read_png_file(o.init_image);
    if (!img) return fail("--init-image: " + img.status().message(), 2);
    init = std::move(img).value();
  }

  // ---- model ----
  const auto t_load = Clock::now();
  auto precision = cli::resolve_precision(o.precision, o.model);
  if (!precision) return fail(precision.status().message(), 2);
  auto kind = cli::resolve_backend(o.backend);
  if (!kind) return fail(kind.status().message(), 2);
  LoadOptions lo;
  lo.precision = *precision;
  lo.backend = *kind;
  auto loaded = load_denoiser(o.model, o.threads, lo);
  if (!loaded) return fail(loaded.status().message());
  Denoiser& model = **loaded;
  model.set_memory_limit(static_cast<int64_t>(o.max_memory_mb * 1048576.0));
  const DenoiserInfo& info = model.info();
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  if (!init.samples.empty()) {
    const int W = o.width ? o.width : info.width, H = o.height ? o.height : info.height;
    if (init.width != W || init.height != H)
      return fail("--init-image " + o.init_image + " is " + std::to_string(init.width) + "x" +
                      std::to_string(init.height) + " but the output size is " + std::to_string(W) +
                      "x" + std::to_string(H) +
                      " (duet does not resize; resize it or pass --width/--height)",
                  2);
    std::string note;
    auto conv = convert_channels(init, info.channels, &note);
    if (!conv) return fail("--init-image " + o.init_image + ": " + conv.status().message(), 2);
    if (!note.empty() && !o.quiet)
      std::fprintf(stderr, "note: %s: %s\n", o.init_image.c_str(), note.c_str());
    p.init_image.resize(static_cast<size_t>(info.channels) * H * W);
    if (auto st = image_to_chw(*conv, p.init_image.data(), p.init_image.size()); !st.is_ok())
      return fail(st.message());
  }
  if (o.cfg_scale_opt && o.cfg_scale_opt->count() == 0) p.cfg_scale = info.cfg_scale;
  if (auto st = validate_generate_params(p, info); !st.is_ok()) return fail(st.message(), 2);

  // ---- sample ----
  ProgressBar bar(!o.quiet && isatty(STDERR_FILENO));
  g_cancel = false;
  auto old_handler = std::signal(SIGINT, on_sigint);
  auto result = generate(
      model, p, [&](const StepProgress& s) { bar.update(s); }, &g_cancel);
  bar.finish();
  std::signal(SIGINT, old_handler);
  if (!result) {
    const StatusCode code = result.status().code();
    return fail(result.status().message(), code == StatusCode::kCancelled         ? 130
                                           : code == StatusCode::kInvalidArgument ? 2
                                                                                  : 1);
  }
  const GenerateResult& r = *result;

  // ---- write ----
  const auto t_write = Clock::now();
  const int C = r.channels, H = r.height, W = r.width;
  const size_t img = static_cast<size_t>(C) * H * W;
  if (!o.output_dir.empty()) {
    const fs::path dir(o.output_dir);
    if (o.grid) grid_file = (dir / ("grid-" + std::to_string(r.seed) + ".png")).string();
    for (int i = 0; i < o.n; ++i)
      files.push_back((dir / (std::to_string(r.seed) + "-" + std::to_string(i) + ".png")).string());
  } else if (o.grid) {
    grid_file = files.front();
    files.clear();
  }
  auto write_one = [&](const std::string& path, const float* x, int h, int w, int index) -> Status {
    DUET_ASSIGN_OR_RETURN(PngImage png, image_from_chw(x, C, h, w, o.bit_depth));
    ImageParameters ip = image_parameters(p, r, info, index);
    if (index < 0) ip.set("Grid", std::to_string(o.n) + " images");
    png.text.emplace_back("parameters", format_parameters(ip));
    return write_png_file(path, png);
  };
  for (size_t i = 0; i < files.size(); ++i)
    if (auto st = write_one(files[i], r.images.f32() + i * img, H, W, static_cast<int>(i));
        !st.is_ok())
      return fail(st.message());
  if (!grid_file.empty()) {
    int gh = 0, gw = 0;
    auto grid = make_grid(r.images.f32(), o.n, C, H, W, 0, &gh, &gw);
    if (auto st = write_one(grid_file, grid.data(), gh, gw, o.n == 1 ? 0 : -1); !st.is_ok())
      return fail(st.message());
  }
  const double write_s = std::chrono::duration<double>(Clock::now() - t_write).count();
  const double total_s = std::chrono::duration<double>(Clock::now() - t0).count();

  std::vector<std::string> all = files;
  if (!grid_file.empty()) all.push_back(grid_file);
  if (o.json) {
    nlohmann::ordered_json j;
    j["files"] = all;
    if (!grid_file.empty()) j["grid"] = grid_file;
    j["seed"] = r.seed;
    j["seeds"] = r.seeds;
    j["model"] = info.name;
    j["prompts"] = p.prompts;
    j["negative_prompt"] = p.negative_prompt;
    j["n"] = p.n;
    j["width"] = W;
    j["height"] = H;
    j["steps"] = p.steps;
    j["sampler"] = p.sampler;
    j["karras"] = p.karras;
    j["cfg_scale"] = p.cfg_scale;
    if (p.cfg_sigma_lo >= 0) j["cfg_interval"] = {p.cfg_sigma_lo, p.cfg_sigma_hi};
    j["guided_evaluations"] = r.guided_evaluations;
    j["cache"] = r.cache;
    j["cache_skipped_calls"] = r.cache_skipped_calls;
    j["backbone_blocks_run"] = r.backbone_blocks_run;
    j["backbone_blocks_total"] = r.backbone_blocks_total;
    if (p.cache.mode != CacheMode::kOff)
      if (auto cfg = load_config(o.model + "/config.json"); cfg.is_ok()) {
        const std::vector<int>& gc = r.guided_calls;
        j["backbone_flops_saved"] = bench::cache_flops_saved(
            *cfg, p.cache, r.cache_skipped_calls,
            [&](int c) -> int64_t {
              return std::find(gc.begin(), gc.end(), c) != gc.end() ? 2 * p.n : p.n;
            },
            H, W);
      }
    j["rng"] = p.rng;
    j["refine"] = refine_description(p, info.refine_every);
    j["batch"] = r.batch;
    j["model_evaluations"] = r.model_evaluations;
    j["refiner_evaluations"] = r.refiner_evaluations;
    j["refined_calls"] = r.refined_calls;
    j["start_call"] = r.start_call;
    j["timings"] = {{"load_s", load_s},
                    {"encode_s", r.timings.encode_s},
                    {"prepare_s", r.timings.prepare_s},
                    {"denoise_s", r.timings.denoise_s},
                    {"finish_s", r.timings.finish_s},
                    {"write_s", write_s},
                    {"total_s", total_s}};
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else if (!o.quiet) {
    std::string list;
    for (const auto& f : all) list += (list.empty() ? "" : ", ") + f;
    std::printf("wrote %s (seed %lld, %d model evaluations, %d with refiner, %.2fs sampling)\n",
                list.c_str(), static_cast<long long>(r.seed), r.model_evaluations,
                r.refiner_evaluations, r.timings.denoise_s);
  }
  return 0;
}

static duet::cli::CommandRegistrar registrar(
    "generate", "Generate images from a text prompt (txt2img / img2img)",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<Options>();
      sub.add_option("--model", o->model, "model directory (config.json + model.safetensors)")
          ->capture_default_str();
      sub.add_option("-p,--prompt", o->prompts, "prompt (repeat for one prompt per image)")
          ->required();
      sub.add_option("--negative-prompt", o->negative_prompt, "negative (unconditional) prompt");
      sub.add_option("-n,--num-images", o->n, "images per run (one batch)")->capture_default_str();
      sub.add_option("--steps", o->steps, "sampler steps")->capture_default_str();
      sub.add_option("--sampler", o->sampler, "sampler name")->capture_default_str();
      sub.add_flag("--karras", o->karras, "Karras sigmas (not ddim/ddpm)");
      o->cfg_scale_opt = sub.add_option(
          "--cfg-scale", o->cfg_scale,
          "classifier-free guidance scale (default: the model's inference.cfg_scale)");
      sub.add_option("--cfg-interval", o->cfg_interval,
                     "SIGMA_LO,SIGMA_HI: guidance only on calls whose noise level sigma lies in "
                     "the interval; the others run the conditional rows alone (half the batch)");
      sub.add_option("--cache", o->cache,
                     "backbone cache: off | on (= " + std::string(kCacheOnSpec) +
                         ") | step:THRESH[,START,END] | block:F,B,THRESH[,START,END] "
                         "(docs/caching.md)")
          ->capture_default_str();
      sub.add_option("--seed", o->seed, "seed (-1 = random; the seed used is reported)")
          ->capture_default_str();
      sub.add_option("--rng", o->rng, "noise generator: torch | philox")
          ->check(CLI::IsMember({"torch", "philox"}))
          ->capture_default_str();
      auto* every = sub.add_option("--refine-every", o->refine_every,
                                   "run the refiner on model calls i with (i+1) % K == 0 "
                                   "(0 = never; default: the model config)");
      auto* steps = sub.add_option("--refine-steps", o->refine_steps,
                                   "1-based model calls that run the refiner, e.g. 3,6,9");
      auto* mode = sub.add_option("--refine", o->refine, "all | none")
                       ->check(CLI::IsMember({"all", "none"}));
      every->excludes(steps)->excludes(mode);
      steps->excludes(mode);
      sub.add_option("--width", o->width, "image width (default: the model's)");
      sub.add_option("--height", o->height, "image height (default: the model's)");
      sub.add_option("--init-image", o->init_image, "PNG to start from (img2img)");
      sub.add_option("--max-memory", o->max_memory_mb,
                     "cap (MiB) on the model's buffers; a larger batch × size fails up front "
                     "(0 = no cap)")
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--strength", o->strength, "img2img strength in [0, 1]")
          ->capture_default_str();
      auto* out = sub.add_option("-o,--output", o->output,
                                 "output PNG (default duet-output.png; -N suffixes for n > 1)");
      auto* dir = sub.add_option("--output-dir", o->output_dir,
                                 "directory for SEED-INDEX.png files (created if missing)");
      out->excludes(dir);
      sub.add_flag("--grid", o->grid, "write the n images as one grid image");
      sub.add_option("--bit-depth", o->bit_depth, "PNG bit depth: 8 | 16")
          ->check(CLI::IsMember({8, 16}))
          ->capture_default_str();
      sub.add_flag("-q,--quiet", o->quiet, "no progress bar or summary line");
      sub.add_flag("--json", o->json, "machine-readable summary on stdout");
      sub.add_option("--threads", o->threads,
                     "CPU threads (0 = the CPUs other processes leave free: duet info)");
      cli::add_precision_option(sub, &o->precision);
      cli::add_backend_option(sub, &o->backend);
      return [o]() { return run_generate(*o); };
    });

}  // namespace
