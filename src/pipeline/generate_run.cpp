// GenerateRun: one generation's state between model calls — sampler, latents, noise source,
// guidance, refine schedule and timings. generate() (pipeline.cpp) and the server's batched
// engine (serve/pipeline_engine.cpp) both drive it; nothing here calls the model.
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
#include "duet/pipeline.h"

namespace duet {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
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

struct GenerateRun::State {
  GenerateResult r;
  std::vector<std::string> texts;
  std::unique_ptr<diffusion::Sampler> sampler;
  std::unique_ptr<diffusion::NoiseSource> noise;
  std::vector<bool> refine;
  std::vector<bool> guide;  // per call: guidance on (the interval's decision)
  int n = 0, rows = 0;
  size_t img = 0, N = 0;  // floats per image, per n images
  bool guided = false;
  float g = 1.0f;
  int call = 0;                           // next model call
  double cache_start = 0, cache_end = 1;  // GenerateParams::cache START, END
  const DenoiserCache* cache = nullptr;   // attach_cache (not owned)
  int depth = 0;                          // DenoiserInfo::depth
  Clock::time_point t_start, t_loop, t_call;
  bool finished = false;
  // Inpainting (empty unless GenerateParams::mask): per-pixel mask m [H, W], the init images
  // x0 [n, C, H, W] and scratch for x0 noised to the next call's level [n, C, H, W].
  std::vector<float> mask, x0, x0_noised;
};

GenerateRun::GenerateRun(std::unique_ptr<State> s) : s_(std::move(s)) {}
GenerateRun::~GenerateRun() = default;

Result<std::unique_ptr<GenerateRun>> GenerateRun::start(const DenoiserInfo& info,
                                                        const GenerateParams& p) {
  auto st = std::make_unique<State>();
  State& s = *st;
  s.t_start = Clock::now();
  DUET_RETURN_IF_ERROR(validate_generate_params(p, info));
  GenerateResult& r = s.r;
  const int C = info.channels;
  const int H = p.height ? p.height : info.height;
  const int W = p.width ? p.width : info.width;
  s.n = p.n;
  s.guided = p.cfg_scale != 1.0f;
  s.g = p.cfg_scale;
  s.rows = s.guided ? 2 * s.n : s.n;
  s.img = static_cast<size_t>(C) * H * W;
  s.N = s.img * s.n;
  r.width = W;
  r.height = H;
  r.channels = C;
  r.batch = s.rows;

  // --- schedule, sampler, refine schedule, seed ---
  diffusion::ScheduleParams sch;
  DUET_ASSIGN_OR_RETURN(sch.beta, diffusion::parse_beta_schedule(info.beta_schedule));
  DUET_ASSIGN_OR_RETURN(sch.prediction, diffusion::parse_prediction(info.prediction_type));
  sch.num_train_timesteps = info.num_train_timesteps;
  DUET_ASSIGN_OR_RETURN(diffusion::NoiseSchedule sched, diffusion::NoiseSchedule::create(sch));
  DUET_ASSIGN_OR_RETURN(s.sampler, diffusion::make_sampler(sampler_params(p), sched, s.N));
  r.num_calls = s.sampler->num_calls();
  DUET_ASSIGN_OR_RETURN(s.refine, refine_schedule(p, r.num_calls, info.refine_every));
  s.guide.assign(r.num_calls, s.guided);
  if (s.guided && p.cfg_sigma_lo >= 0)
    for (int c = 0; c < r.num_calls; ++c) {
      const double sigma = sched.t_to_sigma_interp(s.sampler->timesteps()[c]);
      s.guide[c] = sigma >= p.cfg_sigma_lo && sigma <= p.cfg_sigma_hi;
    }
  if (p.seed >= 0) {
    r.seed = p.seed;
  } else {
    std::random_device rd;
    r.seed = static_cast<int64_t>(rd());  // 32 bits, as torch.manual_seed uses them
  }
  r.seeds.assign(s.n, r.seed);

  // --- row texts: cond rows first, then uncond rows ---
  s.texts.reserve(s.rows);
  for (int i = 0; i < s.n; ++i)
    s.texts.push_back(p.prompts.size() == 1 ? p.prompts[0] : p.prompts[i]);
  if (s.guided)
    for (int i = 0; i < s.n; ++i) s.texts.push_back(p.negative_prompt);

  // --- buffers (nothing in write_input / complete allocates) ---
  r.x_T = Tensor::zeros({s.n, C, H, W});
  r.samples = Tensor::zeros({s.n, C, H, W});
  r.refined_calls.reserve(r.num_calls);
  r.guided_calls.reserve(r.num_calls);
  r.cache_skipped_calls.reserve(r.num_calls);
  r.cache = cache_spec_string(p.cache);
  s.cache_start = p.cache.start;
  s.cache_end = p.cache.end;
  s.depth = info.depth;
  r.timings.call_s.reserve(r.num_calls);
  float* x = r.samples.f32();
  if (p.rng == "torch") {
    auto src = std::make_unique<diffusion::TorchNoiseSource>(static_cast<uint64_t>(r.seed));
    src->generator().randn(r.x_T.f32(), s.N);  // == torch.manual_seed(seed); torch.randn(n,C,H,W)
    s.noise = std::move(src);
  } else {
    s.noise = std::make_unique<diffusion::PhiloxNoiseSource>(static_cast<uint64_t>(r.seed));
    DUET_RETURN_IF_ERROR(s.noise->next(r.x_T.f32(), s.N));
  }
  const float* xT = r.x_T.f32();
  r.start_call = 0;
  if (!p.init_image.empty()) {
    r.start_call = s.sampler->start_call_for_strength(p.strength);
    std::vector<float> x0(s.N);
    for (int i = 0; i < s.n; ++i)
      std::copy(p.init_image.begin(), p.init_image.end(), &x0[i * s.img]);
    if (r.start_call < r.num_calls) {
      DUET_RETURN_IF_ERROR(s.sampler->add_noise(x0.data(), xT, r.start_call, x));
    } else {
      std::copy(x0.begin(), x0.end(), x);
    }
    if (!p.mask.empty()) {
      s.mask = p.mask;
      s.x0 = std::move(x0);
      s.x0_noised.resize(s.N);
    }
  } else {
    const float sigma = s.sampler->init_noise_sigma();
    for (size_t i = 0; i < s.N; ++i) x[i] = xT[i] * sigma;
  }
  s.sampler->begin(r.start_call);
  s.call = r.start_call;
  return std::unique_ptr<GenerateRun>(new GenerateRun(std::move(st)));
}

const std::vector<std::string>& GenerateRun::texts() const { return s_->texts; }
int GenerateRun::rows() const { return s_->rows; }
int GenerateRun::height() const { return s_->r.height; }
int GenerateRun::width() const { return s_->r.width; }
size_t GenerateRun::row_floats() const { return s_->img; }
bool GenerateRun::done() const { return s_->call >= s_->r.num_calls; }
int GenerateRun::next_call() const { return s_->call; }
bool GenerateRun::refine_next() const { return !done() && s_->refine[s_->call]; }
bool GenerateRun::guided_at(int call) const {
  return call >= 0 && call < s_->r.num_calls && s_->guide[call];
}
bool GenerateRun::guided_next() const { return guided_at(s_->call); }
int GenerateRun::images() const { return s_->n; }
int GenerateRun::rows_next() const { return guided_next() ? 2 * s_->n : s_->n; }
int GenerateRun::num_calls() const { return s_->r.num_calls; }
bool GenerateRun::refine_at(int call) const {
  return call >= 0 && call < s_->r.num_calls && s_->refine[call];
}
void GenerateRun::add_encode_seconds(double sec) { s_->r.timings.encode_s += sec; }
bool GenerateRun::cache_eligible_next() const {
  const double f = static_cast<double>(s_->call) / s_->r.num_calls;
  return f >= s_->cache_start && f < s_->cache_end;
}
void GenerateRun::note_cache(bool computed) {
  if (!computed && !done()) s_->r.cache_skipped_calls.push_back(s_->call);
}
void GenerateRun::attach_cache(const DenoiserCache* cache) { s_->cache = cache; }

void GenerateRun::write_input(float* in, float* t) {
  State& s = *s_;
  s.t_call = Clock::now();
  if (s.call == s.r.start_call) {
    s.t_loop = s.t_call;
    s.r.timings.prepare_s = seconds_between(s.t_start, s.t_loop) - s.r.timings.encode_s;
  }
  const float* x = s.r.samples.f32();
  const float d = s.sampler->input_divisor(s.call);
  if (d != 1.0f) {
    for (size_t i = 0; i < s.N; ++i) in[i] = x[i] / d;
  } else {
    std::memcpy(in, x, s.N * sizeof(float));
  }
  if (guided_next()) std::memcpy(in + s.N, in, s.N * sizeof(float));
  std::fill(t, t + rows_next(), s.sampler->timesteps()[s.call]);
}

Status GenerateRun::complete(float* out, const GenerateProgressFn& progress) {
  State& s = *s_;
  GenerateResult& r = s.r;
  if (done()) return internal_error("GenerateRun::complete after the last model call");
  const int c = s.call;
  ++r.model_evaluations;
  if (s.refine[c]) {
    ++r.refiner_evaluations;
    r.refined_calls.push_back(c);
  }
  if (s.guide[c]) {
    ++r.guided_evaluations;
    r.guided_calls.push_back(c);
    // eps = eps_u + g * (eps_c - eps_u); cond rows are the first half of the batch.
    const float* eu = out + s.N;
    for (size_t i = 0; i < s.N; ++i) out[i] = eu[i] + s.g * (out[i] - eu[i]);
  }
  float* x = r.samples.f32();
  DUET_RETURN_IF_ERROR(s.sampler->step(c, out, x, *s.noise));
  if (!s.mask.empty()) {
    // Latent blend: kept pixels follow the init image's own noising path (same x_T), so the
    // next call sees them at its noise level; after the last call they are the init image.
    const float* keep = s.x0.data();
    if (c + 1 < r.num_calls) {
      DUET_RETURN_IF_ERROR(
          s.sampler->add_noise(s.x0.data(), r.x_T.f32(), c + 1, s.x0_noised.data()));
      keep = s.x0_noised.data();
    }
    const size_t hw = s.mask.size();
    for (size_t i = 0; i < s.N; ++i) {
      const float m = s.mask[i % hw];
      x[i] = m * x[i] + (1.0f - m) * keep[i];
    }
  }
  ++s.call;
  const auto now = Clock::now();
  r.timings.call_s.push_back(seconds_between(s.t_call, now));
  if (progress)
    progress({c + 1 - r.start_call, r.num_calls - r.start_call, static_cast<bool>(s.refine[c]),
              seconds_between(s.t_loop, now), c, x});
  return Status::ok();
}

Status GenerateRun::cancelled() const {
  const GenerateResult& r = s_->r;
  return duet::cancelled("generation cancelled after " + std::to_string(s_->call - r.start_call) +
                         " of " + std::to_string(r.num_calls - r.start_call) + " model calls");
}

Result<GenerateResult> GenerateRun::finish() {
  State& s = *s_;
  if (s.finished) return internal_error("GenerateRun::finish called twice");
  if (!done()) return internal_error("GenerateRun::finish before the last model call");
  s.finished = true;
  GenerateResult& r = s.r;
  const auto t_fin = Clock::now();
  if (r.start_call == r.num_calls) {  // img2img at strength ~0: no call ran
    s.t_loop = t_fin;
    r.timings.prepare_s = seconds_between(s.t_start, t_fin) - r.timings.encode_s;
  }
  r.timings.denoise_s = seconds_between(s.t_loop, t_fin);
  r.backbone_blocks_total = static_cast<int64_t>(r.model_evaluations) * s.depth;
  r.backbone_blocks_run = r.backbone_blocks_total;
  if (s.cache) {
    r.backbone_blocks_run = s.cache->stats().blocks_run;
    r.backbone_blocks_total = s.cache->stats().blocks_total;
  }
  const float* x = r.samples.f32();
  for (size_t i = 0; i < s.N; ++i)
    if (!std::isfinite(x[i]))
      return internal_error("sampling produced a non-finite value (image " +
                            std::to_string(i / s.img) + "); the model output diverged");
  r.images = Tensor::zeros({s.n, r.channels, r.height, r.width});
  float* img = r.images.f32();
  for (size_t i = 0; i < s.N; ++i) img[i] = std::clamp(x[i], -1.0f, 1.0f);
  r.timings.finish_s = seconds_between(t_fin, Clock::now());
  r.timings.total_s = seconds_between(s.t_start, Clock::now());
  return std::move(r);
}

}  // namespace duet
