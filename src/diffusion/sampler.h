// Diffusion samplers (diffusers-compatible schedulers) driven by a denoise callback.
//
//   auto sched = NoiseSchedule::create({BetaSchedule::kScaledLinear});
//   SamplerParams sp; sp.name = "dpmpp_2m"; sp.steps = 20; sp.karras = true;
//   auto sampler = make_sampler(sp, *sched, numel);        // allocates every buffer once
//   std::vector<float> x(numel); torch_randn(...) ; scale by sampler->init_noise_sigma()
//   TorchNoiseSource noise(seed);
//   sampler->run(x.data(), denoise, noise);               // no heap allocation per step
//
// The callback receives the model input (latents already scaled by the sampler, i.e. diffusers'
// scale_model_input) and the real-valued training timestep, and writes the raw model output
// (epsilon or v, per ScheduleParams::prediction). Classifier-free guidance belongs inside it.
// Latents live in the sampler's own space: VP (DDIM, DDPM, DPM-Solver, UniPC) or sigma space
// (Euler, Euler a, Heun, DPM2, LMS); init_noise_sigma() is what pure noise must be scaled by.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "diffusion/rng.h"
#include "diffusion/schedule.h"
#include "duet/status.h"

namespace duet::diffusion {

struct SamplerParams {
  // ddpm ddim euler euler_a heun dpm2 lms dpmpp_2s dpmsolver_3s dpmsolver_2m dpmpp_2m dpmpp_3m
  // dpmpp_2m_sde unipc
  std::string name = "dpmpp_2m";
  int steps = 20;
  bool karras = false;   // Karras sigmas (euler, euler_a, heun, dpm2, lms, dpm*, unipc)
  std::string spacing;   // "" = the diffusers class default; "leading" | "trailing" | "linspace"
  int steps_offset = 0;  // added to "leading" timesteps (Stable Diffusion configs use 1)
  float eta = 0.0f;      // ddim: 0 = deterministic DDIM, 1 = DDPM-like noise
  int set_alpha_to_one =
      -1;  // ddim: final alphabar 1 (1) or alphas_cumprod[0] (0); -1 = default (1)
  std::string final_sigmas;  // "zero" | "sigma_min"; "" = default (zero; sigma_min for dpmsolver_*)
  int lower_order_final = -1;  // dpm*/unipc: -1 = class default
  int lms_order = 4;
  std::string unipc_solver = "bh2";  // unipc: bh1 | bh2
};

// All sampler names, in CLI spelling.
const std::vector<std::string>& sampler_names();

using DenoiseFn = std::function<Status(const float* x, float t, float* out)>;
using ProgressFn = std::function<void(int call, int num_calls)>;

class Sampler {
 public:
  virtual ~Sampler() = default;

  const SamplerParams& params() const { return params_; }
  const NoiseSchedule& schedule() const { return sched_; }
  size_t numel() const { return n_; }
  // Real-valued timestep passed to the model at each call (diffusers scheduler.timesteps).
  const std::vector<float>& timesteps() const { return timesteps_; }
  int num_calls() const { return static_cast<int>(timesteps_.size()); }
  // diffusers scheduler.sigmas (empty for ddim/ddpm).
  const std::vector<float>& sigmas() const { return sigmas_; }
  float init_noise_sigma() const { return init_noise_sigma_; }
  // Model calls per solver step (2 for heun and dpm2, else 1): diffusers `scheduler.order`.
  int order() const { return order_; }
  virtual bool stochastic() const { return false; }

  // --- step-wise API (diffusers scale_model_input / step) ---
  // Resets solver state so that the next step() is call `start_call` (img2img starts later).
  void begin(int start_call = 0);
  // scale_model_input: model_input = x / input_divisor(call).
  virtual float input_divisor(int /*call*/) const { return 1.0f; }
  // One scheduler step for model call `call` (must follow begin() / the previous call in order):
  // x holds the current latents on entry and the updated latents on return. Draws from `noise`
  // exactly when diffusers' step would call randn_tensor.
  Status step(int call, const float* model_output, float* x, NoiseSource& noise);

  // Full loop from `start_call`: x = latents in, final latents out.
  Status run(float* x, const DenoiseFn& denoise, NoiseSource& noise,
             const ProgressFn& progress = {}, int start_call = 0);

  // --- img2img (diffusers `strength`) ---
  // First model call for a given strength in [0, 1] (pipeline get_timesteps semantics);
  // returns num_calls() when strength is so small that no step runs.
  int start_call_for_strength(double strength) const;
  // out = clean latents x0 noised to the level of call `call` (scheduler.add_noise with
  // begin_index = call), in the sampler's latent space.
  virtual Status add_noise(const float* x0, const float* noise, int call, float* out) const = 0;

 protected:
  Sampler(const SamplerParams& p, const NoiseSchedule& s, size_t n)
      : params_(p), sched_(s), n_(n), scaled_(n), model_out_(n) {}
  virtual void reset_state(int start_call) = 0;
  virtual Status do_step(int call, const float* model_output, float* x, NoiseSource& noise) = 0;

  SamplerParams params_;
  NoiseSchedule sched_;
  size_t n_;
  std::vector<float> timesteps_, sigmas_;
  float init_noise_sigma_ = 1.0f;
  int order_ = 1;
  int next_call_ = 0;
  std::vector<float> scaled_, model_out_;  // run() buffers
};

// Creates a sampler for latents of `numel` floats; every buffer is allocated here.
Result<std::unique_ptr<Sampler>> make_sampler(const SamplerParams& params,
                                              const NoiseSchedule& schedule, size_t numel);

}  // namespace duet::diffusion
