// generate(): prompt encoding, x_T, classifier-free guidance and the sampler loop.
#include "duet/pipeline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "diffusion/rng.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

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

// Sampler parameters for the request (ddim as the python reference pipeline configures it).
diffusion::SamplerParams sampler_params(const GenerateParams& p) {
  diffusion::SamplerParams sp;
  sp.name = p.sampler;
  sp.steps = p.steps;
  sp.karras = p.karras;
  sp.eta = p.eta;
  if (p.sampler == "ddim") {
    sp.spacing = "leading";
    sp.steps_offset = p.steps_offset >= 0 ? p.steps_offset : 1;
    sp.set_alpha_to_one = 0;
  } else if (p.steps_offset >= 0) {
    sp.steps_offset = p.steps_offset;
  }
  return sp;
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
  }
  if (!(p.eta >= 0.0f && p.eta <= 1.0f))
    return invalid_argument("eta must be in [0, 1], got " + std::to_string(p.eta));
  if (p.eta != 0.0f && p.sampler != "ddim")
    return invalid_argument("eta only applies to the ddim sampler");
  if (p.png_bit_depth != 8 && p.png_bit_depth != 16)
    return invalid_argument("PNG bit depth must be 8 or 16, got " +
                            std::to_string(p.png_bit_depth));
  return Status::ok();
}

Result<GenerateResult> generate(Denoiser& model, const GenerateParams& p,
                                const GenerateProgressFn& progress,
                                const std::atomic<bool>* cancel) {
  const auto t_start = Clock::now();
  const DenoiserInfo info = model.info();
  DUET_RETURN_IF_ERROR(validate_generate_params(p, info));
  GenerateResult r;
  const int C = info.channels;
  const int H = p.height ? p.height : info.height;
  const int W = p.width ? p.width : info.width;
  const int n = p.n;
  const bool guided = p.cfg_scale != 1.0f;
  const int batch = guided ? 2 * n : n;
  const size_t img = static_cast<size_t>(C) * H * W;
  const size_t N = img * n;
  r.width = W;
  r.height = H;
  r.channels = C;
  r.batch = batch;

  // --- schedule, sampler, refine schedule, seed ---
  auto t0 = Clock::now();
  diffusion::ScheduleParams sch;
  DUET_ASSIGN_OR_RETURN(sch.beta, diffusion::parse_beta_schedule(info.beta_schedule));
  DUET_ASSIGN_OR_RETURN(sch.prediction, diffusion::parse_prediction(info.prediction_type));
  sch.num_train_timesteps = info.num_train_timesteps;
  DUET_ASSIGN_OR_RETURN(diffusion::NoiseSchedule sched, diffusion::NoiseSchedule::create(sch));
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<diffusion::Sampler> sampler,
                        diffusion::make_sampler(sampler_params(p), sched, N));
  r.num_calls = sampler->num_calls();
  DUET_ASSIGN_OR_RETURN(std::vector<bool> refine,
                        refine_schedule(p, r.num_calls, info.refine_every));
  if (p.seed >= 0) {
    r.seed = p.seed;
  } else {
    std::random_device rd;
    r.seed = static_cast<int64_t>(rd());  // 32 bits, as torch.manual_seed uses them
  }
  r.seeds.assign(n, r.seed);

  // --- prompts: cond rows first, then uncond rows; encoded once ---
  auto t_enc = Clock::now();
  std::vector<std::string> texts;
  texts.reserve(batch);
  for (int i = 0; i < n; ++i) texts.push_back(p.prompts.size() == 1 ? p.prompts[0] : p.prompts[i]);
  if (guided)
    for (int i = 0; i < n; ++i) texts.push_back(p.negative_prompt);
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<PromptEmbedding> emb, model.encode(texts));
  if (!emb || emb->batch() != batch)
    return internal_error("prompt encoder returned the wrong batch size");
  r.timings.encode_s = seconds_since(t_enc);

  // --- buffers (nothing below the loop header allocates) ---
  DUET_RETURN_IF_ERROR(model.prepare(batch, H, W));
  r.x_T = Tensor::zeros({n, C, H, W});
  r.samples = Tensor::zeros({n, C, H, W});
  float* x = r.samples.f32();
  std::vector<float> model_in(img * batch), model_out(img * batch), tvec(batch);
  r.refined_calls.reserve(r.num_calls);
  r.timings.call_s.reserve(r.num_calls);

  std::unique_ptr<diffusion::NoiseSource> noise;
  if (p.rng == "torch") {
    auto src = std::make_unique<diffusion::TorchNoiseSource>(static_cast<uint64_t>(r.seed));
    src->generator().randn(r.x_T.f32(), N);  // == torch.manual_seed(seed); torch.randn(n,C,H,W)
    noise = std::move(src);
  } else {
    noise = std::make_unique<diffusion::PhiloxNoiseSource>(static_cast<uint64_t>(r.seed));
    DUET_RETURN_IF_ERROR(noise->next(r.x_T.f32(), N));
  }
  const float* xT = r.x_T.f32();
  r.start_call = 0;
  if (!p.init_image.empty()) {
    r.start_call = sampler->start_call_for_strength(p.strength);
    std::vector<float> x0(N);
    for (int i = 0; i < n; ++i) std::copy(p.init_image.begin(), p.init_image.end(), &x0[i * img]);
    if (r.start_call < r.num_calls) {
      DUET_RETURN_IF_ERROR(sampler->add_noise(x0.data(), xT, r.start_call, x));
    } else {
      std::copy(x0.begin(), x0.end(), x);
    }
  } else {
    const float s = sampler->init_noise_sigma();
    for (size_t i = 0; i < N; ++i) x[i] = xT[i] * s;
  }
  r.timings.prepare_s = seconds_since(t0) - r.timings.encode_s;

  // --- the sampler loop ---
  const auto t_loop = Clock::now();
  const float g = p.cfg_scale;
  const auto& ts = sampler->timesteps();
  sampler->begin(r.start_call);
  const int total = r.num_calls - r.start_call;
  for (int c = r.start_call; c < r.num_calls; ++c) {
    if (cancel && cancel->load(std::memory_order_relaxed))
      return cancelled("generation cancelled after " + std::to_string(c - r.start_call) + " of " +
                       std::to_string(total) + " model calls");
    const auto t_call = Clock::now();
    const float d = sampler->input_divisor(c);
    if (d != 1.0f) {
      for (size_t i = 0; i < N; ++i) model_in[i] = x[i] / d;
    } else {
      std::memcpy(model_in.data(), x, N * sizeof(float));
    }
    if (guided) std::memcpy(model_in.data() + N, model_in.data(), N * sizeof(float));
    std::fill(tvec.begin(), tvec.end(), ts[c]);
    DUET_RETURN_IF_ERROR(model.denoise(model_in.data(), tvec.data(), batch, H, W, *emb, refine[c],
                                       model_out.data()));
    ++r.model_evaluations;
    if (refine[c]) {
      ++r.refiner_evaluations;
      r.refined_calls.push_back(c);
    }
    if (guided) {
      // eps = eps_u + g * (eps_c - eps_u); cond rows are the first half of the batch.
      float* ec = model_out.data();
      const float* eu = model_out.data() + N;
      for (size_t i = 0; i < N; ++i) ec[i] = eu[i] + g * (ec[i] - eu[i]);
    }
    DUET_RETURN_IF_ERROR(sampler->step(c, model_out.data(), x, *noise));
    r.timings.call_s.push_back(seconds_since(t_call));
    if (progress)
      progress(
          {c + 1 - r.start_call, total, static_cast<bool>(refine[c]), seconds_since(t_loop), c, x});
  }
  r.timings.denoise_s = seconds_since(t_loop);

  // --- output ---
  const auto t_fin = Clock::now();
  for (size_t i = 0; i < N; ++i)
    if (!std::isfinite(x[i]))
      return internal_error("sampling produced a non-finite value (image " +
                            std::to_string(i / img) + "); the model output diverged");
  r.images = Tensor::zeros({n, C, H, W});
  float* out = r.images.f32();
  for (size_t i = 0; i < N; ++i) out[i] = std::clamp(x[i], -1.0f, 1.0f);
  r.timings.finish_s = seconds_since(t_fin);
  r.timings.total_s = seconds_since(t_start);
  return r;
}

}  // namespace duet
