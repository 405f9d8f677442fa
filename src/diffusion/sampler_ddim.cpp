// DDIM (diffusers DDIMScheduler) and DDPM (DDPMScheduler, variance_type="fixed_small").
// Both work on VP latents x_t = sqrt(ab) x0 + sqrt(1 - ab) eps at integer timesteps.
#include <cmath>

#include "diffusion/sampler_internal.h"

namespace duet::diffusion::detail {
namespace {

void vp_add_noise(const NoiseSchedule& s, int64_t t, const float* x0, const float* noise,
                  float* out, size_t n) {
  const float ab = s.alphas_cumprod()[t];
  const float sa = std::sqrt(ab), sb = std::sqrt(1.0f - ab);
  for (size_t i = 0; i < n; ++i) out[i] = sa * x0[i] + sb * noise[i];
}

class DdimSampler final : public Sampler {
 public:
  DdimSampler(const SamplerParams& p, const NoiseSchedule& s, size_t n)
      : Sampler(p, s, n), noise_(p.eta > 0 ? n : 0) {
    const int T = s.num_train_timesteps();
    const std::string spacing = p.spacing.empty() ? "leading" : p.spacing;
    ts_ = ddim_timesteps(spacing, T, p.steps, p.steps_offset);
    for (int64_t t : ts_) timesteps_.push_back(static_cast<float>(t));
    final_ac_ = p.set_alpha_to_one == 0 ? s.alphas_cumprod()[0] : 1.0f;
  }
  bool stochastic() const override { return params_.eta > 0; }
  Status add_noise(const float* x0, const float* noise, int call, float* out) const override {
    vp_add_noise(sched_, ts_.at(call), x0, noise, out, n_);
    return Status::ok();
  }

 protected:
  void reset_state(int) override {}
  Status do_step(int call, const float* m, float* x, NoiseSource& noise) override {
    const int T = sched_.num_train_timesteps();
    const auto& ac = sched_.alphas_cumprod();
    const int64_t t = ts_[call];
    const int64_t prev = t - T / params_.steps;  // diffusers: t - T // num_inference_steps
    if (t < 0 || t >= T) return invalid_argument("ddim: timestep out of range");
    const float a_t = ac[t];
    const float a_prev = prev >= 0 ? ac[prev] : final_ac_;
    const float b_t = 1.0f - a_t;
    const float sa_t = std::sqrt(a_t), sb_t = std::sqrt(b_t);
    const float b_prev = 1.0f - a_prev;
    const float variance = (b_prev / b_t) * (1.0f - a_t / a_prev);
    const float std_dev = params_.eta * std::sqrt(variance);
    const float dir_coef = std::sqrt(1.0f - a_prev - std_dev * std_dev);
    const float sa_prev = std::sqrt(a_prev);
    const bool v = sched_.prediction() == Prediction::kVPrediction;
    for (size_t i = 0; i < n_; ++i) {
      float x0, eps;
      if (v) {
        x0 = sa_t * x[i] - sb_t * m[i];
        eps = sa_t * m[i] + sb_t * x[i];
      } else {
        x0 = (x[i] - sb_t * m[i]) / sa_t;
        eps = m[i];
      }
      x[i] = sa_prev * x0 + dir_coef * eps;
    }
    if (params_.eta > 0) {
      DUET_RETURN_IF_ERROR(noise.next(noise_.data(), n_));
      for (size_t i = 0; i < n_; ++i) x[i] = x[i] + std_dev * noise_[i];
    }
    return Status::ok();
  }

 private:
  std::vector<int64_t> ts_;
  float final_ac_ = 1.0f;
  std::vector<float> noise_;
};

class DdpmSampler final : public Sampler {
 public:
  DdpmSampler(const SamplerParams& p, const NoiseSchedule& s, size_t n)
      : Sampler(p, s, n), noise_(n) {
    const std::string spacing = p.spacing.empty() ? "leading" : p.spacing;
    ts_ = ddim_timesteps(spacing, s.num_train_timesteps(), p.steps, p.steps_offset);
    for (int64_t t : ts_) timesteps_.push_back(static_cast<float>(t));
  }
  bool stochastic() const override { return true; }
  Status add_noise(const float* x0, const float* noise, int call, float* out) const override {
    vp_add_noise(sched_, ts_.at(call), x0, noise, out, n_);
    return Status::ok();
  }

 protected:
  void reset_state(int) override {}
  Status do_step(int call, const float* m, float* x, NoiseSource& noise) override {
    const auto& ac = sched_.alphas_cumprod();
    const int64_t t = ts_[call];
    // previous_timestep(): the next entry of the schedule, -1 after the last.
    const int64_t prev = call + 1 < num_calls() ? ts_[call + 1] : -1;
    if (t < 0 || t >= sched_.num_train_timesteps()) return invalid_argument("ddpm: bad timestep");
    const float a_t = ac[t];
    const float a_prev = prev >= 0 ? ac[prev] : 1.0f;
    const float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
    const float cur_alpha = a_t / a_prev;
    const float cur_beta = 1.0f - cur_alpha;
    const float sa_t = std::sqrt(a_t), sb_t = std::sqrt(b_t);
    const float c_x0 = (std::sqrt(a_prev) * cur_beta) / b_t;
    const float c_x = std::sqrt(cur_alpha) * b_prev / b_t;
    const bool v = sched_.prediction() == Prediction::kVPrediction;
    for (size_t i = 0; i < n_; ++i) {
      const float x0 = v ? sa_t * x[i] - sb_t * m[i] : (x[i] - sb_t * m[i]) / sa_t;
      x[i] = c_x0 * x0 + c_x * x[i];
    }
    if (t > 0) {
      DUET_RETURN_IF_ERROR(noise.next(noise_.data(), n_));
      // _get_variance (fixed_small): (1 - ab_prev) / (1 - ab_t) * beta_t, clamped at 1e-20.
      const float var = std::max((1.0f - a_prev) / (1.0f - a_t) * (1.0f - a_t / a_prev), 1e-20f);
      const float sd = std::sqrt(var);
      for (size_t i = 0; i < n_; ++i) x[i] = x[i] + sd * noise_[i];
    }
    return Status::ok();
  }

 private:
  std::vector<int64_t> ts_;
  std::vector<float> noise_;
};

}  // namespace

Result<std::unique_ptr<Sampler>> make_ddim(const SamplerParams& p, const NoiseSchedule& s,
                                           size_t n) {
  if (p.eta < 0) return invalid_argument("ddim: eta must be >= 0");
  return std::unique_ptr<Sampler>(new DdimSampler(p, s, n));
}
Result<std::unique_ptr<Sampler>> make_ddpm(const SamplerParams& p, const NoiseSchedule& s,
                                           size_t n) {
  return std::unique_ptr<Sampler>(new DdpmSampler(p, s, n));
}

}  // namespace duet::diffusion::detail
