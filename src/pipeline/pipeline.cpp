// validate_generate_params() and generate(): the one-request loop around GenerateRun
// (generate_run.cpp) — prompt encoding, model calls, cancellation.
#include "duet/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include "diffusion/sampler.h"

namespace duet {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int gcd_int(int a, int b) { return b == 0 ? a : gcd_int(b, a % b); }
int lcm_int(int a, int b) { return a / gcd_int(a, b) * b; }

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s;
}

Status check_side(const char* what, int v, int def, const DenoiserInfo& info) {
  if (v == 0) return Status::ok();
  if (v < 0 || v > kMaxImageSide)
    return invalid_argument(std::string(what) + " must be in [1, " + std::to_string(kMaxImageSide) +
                            "], got " + std::to_string(v));
  const int m = lcm_int(std::max(info.patch, 1), std::max(info.refiner_stride, 1));
  if (v % m != 0)
    return invalid_argument(std::string(what) + " " + std::to_string(v) + " is not a multiple of " +
                            std::to_string(m) + " (backbone patch " + std::to_string(info.patch) +
                            ", refiner stride " + std::to_string(info.refiner_stride) + ")");
  if (!info.supports_other_sizes && v != def)
    return invalid_argument(std::string(what) + " " + std::to_string(v) + " differs from the " +
                            "model's " + std::to_string(def) + " and this model cannot change it");
  return Status::ok();
}

}  // namespace

Status validate_generate_params(const GenerateParams& p, const DenoiserInfo& info) {
  if (p.n < 1 || p.n > kMaxImages)
    return invalid_argument("number of images n must be in [1, " + std::to_string(kMaxImages) +
                            "], got " + std::to_string(p.n));
  if (p.prompts.empty()) return invalid_argument("no prompt given");
  if (p.prompts.size() != 1 && static_cast<int>(p.prompts.size()) != p.n)
    return invalid_argument("got " + std::to_string(p.prompts.size()) + " prompts for n = " +
                            std::to_string(p.n) + " images (give one prompt or exactly n)");
  if (p.steps < 1 || p.steps > 1000 || p.steps > info.num_train_timesteps)
    return invalid_argument("steps must be in [1, " +
                            std::to_string(std::min(1000, info.num_train_timesteps)) + "], got " +
                            std::to_string(p.steps));
  const auto& names = diffusion::sampler_names();
  if (std::find(names.begin(), names.end(), p.sampler) == names.end())
    return invalid_argument("unknown sampler '" + p.sampler + "' (available: " + join_names(names) +
                            ")");
  if (p.karras && (p.sampler == "ddim" || p.sampler == "ddpm"))
    return invalid_argument("Karras sigmas do not apply to the " + p.sampler + " sampler");
  if (!std::isfinite(p.cfg_scale) || p.cfg_scale < 0.0f || p.cfg_scale > 100.0f)
    return invalid_argument("cfg scale must be a number in [0, 100], got " +
                            std::to_string(p.cfg_scale));
  if (p.seed < -1) return invalid_argument("seed must be >= 0 (or -1 for random)");
  if (p.rng != "torch" && p.rng != "philox")
    return invalid_argument("rng must be torch or philox, got '" + p.rng + "'");
  DUET_RETURN_IF_ERROR(check_side("width", p.width, info.width, info));
  DUET_RETURN_IF_ERROR(check_side("height", p.height, info.height, info));
  if (p.refine == RefineMode::kEvery && p.refine_every < -1)
    return invalid_argument("refine-every must be >= 0, got " + std::to_string(p.refine_every));
  if (p.refine == RefineMode::kSteps) {
    if (p.refine_steps.empty()) return invalid_argument("refine steps list is empty");
    for (int s : p.refine_steps)
      if (s < 1) return invalid_argument("refine steps are 1-based, got " + std::to_string(s));
  }
  if (!p.init_image.empty()) {
    const int H = p.height ? p.height : info.height, W = p.width ? p.width : info.width;
    const size_t want = static_cast<size_t>(info.channels) * H * W;
    if (p.init_image.size() != want)
      return invalid_argument("init image has " + std::to_string(p.init_image.size()) +
                              " values, the model needs " + std::to_string(info.channels) + "x" +
                              std::to_string(H) + "x" + std::to_string(W));
    if (!(p.strength >= 0.0 && p.strength <= 1.0))
      return invalid_argument("strength must be in [0, 1], got " + std::to_string(p.strength));
    if (!p.mask.empty()) {
      if (p.mask.size() != static_cast<size_t>(H) * W)
        return invalid_argument("mask has " + std::to_string(p.mask.size()) +
                                " values, the image needs " + std::to_string(H) + "x" +
                                std::to_string(W));
      for (float m : p.mask)
        if (!(m >= 0.0f && m <= 1.0f)) return invalid_argument("mask values must be in [0, 1]");
    }
  } else if (!p.mask.empty()) {
    return invalid_argument("a mask needs an init image (inpainting is img2img)");
  }
  if (!(p.eta >= 0.0f && p.eta <= 1.0f))
    return invalid_argument("eta must be in [0, 1], got " + std::to_string(p.eta));
  if (p.eta != 0.0f && p.sampler != "ddim")
    return invalid_argument("eta only applies to the ddim sampler");
  const bool lo_set = p.cfg_sigma_lo >= 0, hi_set = p.cfg_sigma_hi >= 0;
  if (lo_set != hi_set ||
      (lo_set && !(std::isfinite(p.cfg_sigma_hi) && p.cfg_sigma_lo <= p.cfg_sigma_hi)))
    return invalid_argument(
        "cfg interval must be SIGMA_LO,SIGMA_HI with 0 <= SIGMA_LO <= SIGMA_HI, got " +
        std::to_string(p.cfg_sigma_lo) + "," + std::to_string(p.cfg_sigma_hi));
  if (lo_set && p.cfg_scale == 1.0f)
    return invalid_argument("a cfg interval needs guidance (cfg scale != 1)");
  if (p.cache.mode != CacheMode::kOff && info.depth > 0)
    DUET_RETURN_IF_ERROR(check_cache_spec(p.cache, info.depth));
  if (p.png_bit_depth != 8 && p.png_bit_depth != 16)
    return invalid_argument("PNG bit depth must be 8 or 16, got " +
                            std::to_string(p.png_bit_depth));
  return Status::ok();
}

Result<GenerateResult> generate(Denoiser& model, const GenerateParams& p,
                                const GenerateProgressFn& progress,
                                const std::atomic<bool>* cancel) {
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<GenerateRun> run, GenerateRun::start(model.info(), p));
  const int rows = run->rows(), H = run->height(), W = run->width();
  const auto t_enc = Clock::now();
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<PromptEmbedding> emb, model.encode(run->texts()));
  if (!emb || emb->batch() != rows)
    return internal_error("prompt encoder returned the wrong batch size");
  // Calls that a guidance interval leaves unguided run the conditional rows alone.
  std::unique_ptr<PromptEmbedding> cond;
  for (int c = run->next_call(); c < run->num_calls() && !cond; ++c)
    if (rows != run->images() && !run->guided_at(c)) {
      const std::vector<std::string> texts(run->texts().begin(),
                                           run->texts().begin() + run->images());
      DUET_ASSIGN_OR_RETURN(cond, model.encode(texts));
      if (!cond || cond->batch() != run->images())
        return internal_error("prompt encoder returned the wrong batch size");
    }
  run->add_encode_seconds(seconds_since(t_enc));

  // --- buffers (nothing in the loop allocates) ---
  DUET_RETURN_IF_ERROR(model.prepare(rows, H, W));
  std::unique_ptr<DenoiserCache> cache;
  if (p.cache.mode != CacheMode::kOff) {
    DUET_ASSIGN_OR_RETURN(cache, model.make_cache(p.cache, rows));
    run->attach_cache(cache.get());
  }
  std::vector<float> model_in(run->row_floats() * rows), model_out(model_in.size()), t(rows);
  while (!run->done()) {
    if (cancel && cancel->load(std::memory_order_relaxed)) return run->cancelled();
    run->write_input(model_in.data(), t.data());
    DUET_RETURN_IF_ERROR(denoise_next(model, *run, cache.get(), model_in.data(), t.data(),
                                      run->rows_next() == rows ? *emb : *cond, model_out.data()));
    DUET_RETURN_IF_ERROR(run->complete(model_out.data(), progress));
  }
  return run->finish();
}

Status denoise_next(Denoiser& model, GenerateRun& run, DenoiserCache* cache, const float* x,
                    const float* t, const PromptEmbedding& prompt, float* out) {
  const int b = run.rows_next(), H = run.height(), W = run.width();
  const bool refine = run.refine_next();
  if (!cache) return model.denoise(x, t, b, H, W, prompt, refine, out);
  DenoiserCacheUse use{cache, 0, b, run.cache_eligible_next()};
  DUET_RETURN_IF_ERROR(model.denoise_cached(x, t, b, H, W, prompt, refine ? b : 0, {&use, 1}, out));
  run.note_cache(use.computed);
  return Status::ok();
}

}  // namespace duet
