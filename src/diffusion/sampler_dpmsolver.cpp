// DPM-Solver family on VP latents (diffusers DPMSolverMultistepScheduler and
// DPMSolverSinglestepScheduler):
//   dpmpp_2m      multistep, algorithm dpmsolver++, order 2 (midpoint)
//   dpmpp_3m      multistep, dpmsolver++, order 3
//   dpmsolver_2m  multistep, dpmsolver (noise prediction), order 2, final sigma = sigma_min
//   dpmpp_2m_sde  multistep, sde-dpmsolver++, order 2 (one noise draw per step)
//   dpmpp_2s      singlestep, dpmsolver++, order 2
//   dpmsolver_3s  singlestep, dpmsolver, order 3, final sigma = sigma_min
#include <algorithm>
#include <cmath>

#include "diffusion/sampler_internal.h"

namespace duet::diffusion::detail {
namespace {

enum class Algo { kDpmPP, kDpm, kSdeDpmPP };

// Builds diffusers' (timesteps, sigmas) for the DPM-Solver schedulers.
void dpm_schedule(const SamplerParams& p, const NoiseSchedule& s, bool sigma_min_final,
                  std::vector<float>* timesteps, std::vector<float>* sigmas) {
  const int T = s.num_train_timesteps();
  const std::string spacing = p.spacing.empty() ? "linspace" : p.spacing;
  std::vector<double> sig;
  if (p.karras) {
    sig = karras_from_table(s, p.steps);
    // diffusers rounds the Karras timesteps to integers, except for squaredcos_cap_v2 where the
    // fractional value is only truncated by the int64 timestep tensor (values within 1e-6 below an
    // integer count as that integer: numpy's float32 log can differ from libm's by an ulp).
    const bool cosine = s.params().beta == BetaSchedule::kCosine;
    for (double v : sig) {
      const double t = s.sigma_to_t(v);
      timesteps->push_back(static_cast<float>(cosine ? std::trunc(t + 1e-6) : np_round(t)));
    }
  } else {
    for (int64_t t : dpm_timesteps(spacing, T, p.steps, p.steps_offset)) {
      timesteps->push_back(static_cast<float>(t));
      sig.push_back(s.t_to_sigma_interp(static_cast<double>(t)));
    }
  }
  for (double v : sig) sigmas->push_back(static_cast<float>(v));
  if (sigma_min_final) {
    const float ac0 = s.alphas_cumprod()[0];
    sigmas->push_back(std::sqrt((1.0f - ac0) / ac0));
  } else {
    sigmas->push_back(0.0f);
  }
}

class DpmBase : public Sampler {
 public:
  DpmBase(const SamplerParams& p, const NoiseSchedule& s, size_t n, Algo algo, int solver_order)
      : Sampler(p, s, n), algo_(algo), solver_order_(solver_order) {
    const bool sigma_min =
        p.final_sigmas.empty() ? algo == Algo::kDpm : p.final_sigmas == "sigma_min";
    final_zero_ = !sigma_min;
    dpm_schedule(p, s, sigma_min, &timesteps_, &sigmas_);
    hist_.assign(solver_order, std::vector<float>(n));
    if (algo == Algo::kSdeDpmPP) noise_.resize(n);
  }
  bool stochastic() const override { return algo_ == Algo::kSdeDpmPP; }
  Status add_noise(const float* x0, const float* noise, int call, float* out) const override {
    if (call < 0 || call >= num_calls()) return invalid_argument("add_noise: call out of range");
    const AlphaSigma a = alpha_sigma(sigmas_[call]);
    for (size_t i = 0; i < n_; ++i) out[i] = a.alpha * x0[i] + a.sigma * noise[i];
    return Status::ok();
  }

 protected:
  bool data_pred() const { return algo_ != Algo::kDpm; }
  // convert_model_output into history slot `dst`.
  void convert(int call, const float* m, const float* x, float* dst) const {
    const AlphaSigma a = alpha_sigma(sigmas_[call]);
    const bool v = sched_.prediction() == Prediction::kVPrediction;
    if (data_pred()) {
      if (v)
        for (size_t i = 0; i < n_; ++i) dst[i] = a.alpha * x[i] - a.sigma * m[i];
      else
        for (size_t i = 0; i < n_; ++i) dst[i] = (x[i] - a.sigma * m[i]) / a.alpha;
    } else {
      if (v)
        for (size_t i = 0; i < n_; ++i) dst[i] = a.alpha * m[i] + a.sigma * x[i];
      else
        for (size_t i = 0; i < n_; ++i) dst[i] = m[i];
    }
  }
  // Push a converted output: returns pointer to the slot to write (newest).
  float* push() {
    head_ = (head_ + 1) % solver_order_;
    filled_ = std::min(filled_ + 1, solver_order_);
    return hist_[head_].data();
  }
  // k = 0 newest, 1 previous, ...
  const float* hist(int k) const {
    return hist_[(head_ - k + solver_order_) % solver_order_].data();
  }

  // First-order update from sigma index s to t (x = sample at s).
  void first_order(int s_idx, int t_idx, const float* x, const float* m0, const float* noise,
                   float* out) const {
    const AlphaSigma at = alpha_sigma(sigmas_[t_idx]), as = alpha_sigma(sigmas_[s_idx]);
    const float h = lambda_of(at) - lambda_of(as);
    if (algo_ == Algo::kDpmPP) {
      const float c1 = at.sigma / as.sigma, c2 = at.alpha * (std::exp(-h) - 1.0f);
      for (size_t i = 0; i < n_; ++i) out[i] = c1 * x[i] - c2 * m0[i];
    } else if (algo_ == Algo::kDpm) {
      const float c1 = at.alpha / as.alpha, c2 = at.sigma * (std::exp(h) - 1.0f);
      for (size_t i = 0; i < n_; ++i) out[i] = c1 * x[i] - c2 * m0[i];
    } else {
      const float c1 = at.sigma / as.sigma * std::exp(-h);
      const float c2 = at.alpha * (1.0f - std::exp(-2.0f * h));
      const float c3 = at.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
      for (size_t i = 0; i < n_; ++i) out[i] = (c1 * x[i] + c2 * m0[i]) + c3 * noise[i];
    }
  }

  Algo algo_;
  int solver_order_;
  bool final_zero_ = true;
  std::vector<std::vector<float>> hist_;
  int head_ = 0, filled_ = 0;
  std::vector<float> noise_;
};

class DpmMultistep final : public DpmBase {
 public:
  DpmMultistep(const SamplerParams& p, const NoiseSchedule& s, size_t n, Algo a, int order)
      : DpmBase(p, s, n, a, order), lower_order_final_(p.lower_order_final != 0) {}

 protected:
  void reset_state(int) override {
    filled_ = 0;
    lower_order_nums_ = 0;
  }
  Status do_step(int i, const float* m, float* x, NoiseSource& noise) override {
    const int N = num_calls();
    const bool lof = i == N - 1 && ((lower_order_final_ && N < 15) || final_zero_);
    const bool los = i == N - 2 && lower_order_final_ && N < 15;
    convert(i, m, x, push());
    const float* nz = nullptr;
    if (algo_ == Algo::kSdeDpmPP) {
      DUET_RETURN_IF_ERROR(noise.next(noise_.data(), n_));
      nz = noise_.data();
    }
    if (solver_order_ == 1 || lower_order_nums_ < 1 || lof) {
      first_order(i, i + 1, x, hist(0), nz, x);
    } else if (solver_order_ == 2 || lower_order_nums_ < 2 || los) {
      second_order(i, x, nz);
    } else {
      third_order(i, x);
    }
    if (lower_order_nums_ < solver_order_) ++lower_order_nums_;
    return Status::ok();
  }

 private:
  void second_order(int i, float* x, const float* noise) const {
    const AlphaSigma at = alpha_sigma(sigmas_[i + 1]), a0 = alpha_sigma(sigmas_[i]),
                     a1 = alpha_sigma(sigmas_[i - 1]);
    const float lt = lambda_of(at), l0 = lambda_of(a0), l1 = lambda_of(a1);
    const float h = lt - l0, h0 = l0 - l1;
    const float r0 = h0 / h;
    const float inv_r0 = 1.0f / r0;
    const float* m0 = hist(0);
    const float* m1 = hist(1);
    if (algo_ == Algo::kDpmPP) {
      const float c1 = at.sigma / a0.sigma, c2 = at.alpha * (std::exp(-h) - 1.0f), c3 = 0.5f * c2;
      for (size_t k = 0; k < n_; ++k) {
        const float d1 = inv_r0 * (m0[k] - m1[k]);
        x[k] = (c1 * x[k] - c2 * m0[k]) - c3 * d1;
      }
    } else if (algo_ == Algo::kDpm) {
      const float c1 = at.alpha / a0.alpha, c2 = at.sigma * (std::exp(h) - 1.0f), c3 = 0.5f * c2;
      for (size_t k = 0; k < n_; ++k) {
        const float d1 = inv_r0 * (m0[k] - m1[k]);
        x[k] = (c1 * x[k] - c2 * m0[k]) - c3 * d1;
      }
    } else {
      const float c1 = at.sigma / a0.sigma * std::exp(-h);
      const float c2 = at.alpha * (1.0f - std::exp(-2.0f * h)), c3 = 0.5f * c2;
      const float c4 = at.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
      for (size_t k = 0; k < n_; ++k) {
        const float d1 = inv_r0 * (m0[k] - m1[k]);
        x[k] = ((c1 * x[k] + c2 * m0[k]) + c3 * d1) + c4 * noise[k];
      }
    }
  }
  void third_order(int i, float* x) const {
    const AlphaSigma at = alpha_sigma(sigmas_[i + 1]), a0 = alpha_sigma(sigmas_[i]),
                     a1 = alpha_sigma(sigmas_[i - 1]), a2 = alpha_sigma(sigmas_[i - 2]);
    const float lt = lambda_of(at), l0 = lambda_of(a0), l1 = lambda_of(a1), l2 = lambda_of(a2);
    const float h = lt - l0, h0 = l0 - l1, h1 = l1 - l2;
    const float r0 = h0 / h, r1 = h1 / h;
    const float i_r0 = 1.0f / r0, i_r1 = 1.0f / r1, f = r0 / (r0 + r1), g = 1.0f / (r0 + r1);
    const float* m0 = hist(0);
    const float* m1 = hist(1);
    const float* m2 = hist(2);
    if (algo_ == Algo::kDpm) {
      const float eh = std::exp(h);
      const float c1 = at.alpha / a0.alpha, c2 = at.sigma * (eh - 1.0f),
                  c3 = at.sigma * ((eh - 1.0f) / h - 1.0f),
                  c4 = at.sigma * ((eh - 1.0f - h) / (h * h) - 0.5f);
      for (size_t k = 0; k < n_; ++k) {
        const float d10 = i_r0 * (m0[k] - m1[k]), d11 = i_r1 * (m1[k] - m2[k]);
        const float d1 = d10 + f * (d10 - d11), d2 = g * (d10 - d11);
        x[k] = ((c1 * x[k] - c2 * m0[k]) - c3 * d1) - c4 * d2;
      }
    } else {
      const float eh = std::exp(-h);
      const float c1 = at.sigma / a0.sigma, c2 = at.alpha * (eh - 1.0f),
                  c3 = at.alpha * ((eh - 1.0f) / h + 1.0f),
                  c4 = at.alpha * ((eh - 1.0f + h) / (h * h) - 0.5f);
      for (size_t k = 0; k < n_; ++k) {
        const float d10 = i_r0 * (m0[k] - m1[k]), d11 = i_r1 * (m1[k] - m2[k]);
        const float d1 = d10 + f * (d10 - d11), d2 = g * (d10 - d11);
        x[k] = ((c1 * x[k] - c2 * m0[k]) + c3 * d1) - c4 * d2;
      }
    }
  }

  bool lower_order_final_;
  int lower_order_nums_ = 0;
};

class DpmSinglestep final : public DpmBase {
 public:
  DpmSinglestep(const SamplerParams& p, const NoiseSchedule& s, size_t n, Algo a, int order)
      : DpmBase(p, s, n, a, order), sample_(n) {
    // lower_order_final defaults to False, but set_timesteps rewrites it to True for uneven step
    // counts or final sigma zero.
    bool lof = p.lower_order_final > 0;
    if (!lof && p.steps % order != 0) lof = true;
    if (!lof && final_zero_) lof = true;
    const int steps = p.steps;
    if (lof) {
      if (order == 3) {
        if (steps % 3 == 0) {
          for (int k = 0; k < steps / 3 - 1; ++k) orders_.insert(orders_.end(), {1, 2, 3});
          orders_.insert(orders_.end(), {1, 2, 1});
        } else if (steps % 3 == 1) {
          for (int k = 0; k < steps / 3; ++k) orders_.insert(orders_.end(), {1, 2, 3});
          orders_.push_back(1);
        } else {
          for (int k = 0; k < steps / 3; ++k) orders_.insert(orders_.end(), {1, 2, 3});
          orders_.insert(orders_.end(), {1, 2});
        }
      } else if (order == 2) {
        if (steps % 2 == 0) {
          for (int k = 0; k < steps / 2 - 1; ++k) orders_.insert(orders_.end(), {1, 2});
          orders_.insert(orders_.end(), {1, 1});
        } else {
          for (int k = 0; k < steps / 2; ++k) orders_.insert(orders_.end(), {1, 2});
          orders_.push_back(1);
        }
      } else {
        orders_.assign(steps, 1);
      }
    } else {
      for (int k = 0; k < steps / order; ++k)
        for (int o = 1; o <= order; ++o) orders_.push_back(o);
    }
  }
  const std::vector<int>& order_list() const { return orders_; }

 protected:
  void reset_state(int) override { filled_ = 0; }
  Status do_step(int i, const float* m, float* x, NoiseSource& noise) override {
    if (i >= static_cast<int>(orders_.size())) return internal_error("dpm singlestep: order list");
    convert(i, m, x, push());
    const float* nz = nullptr;
    if (algo_ == Algo::kSdeDpmPP) {
      DUET_RETURN_IF_ERROR(noise.next(noise_.data(), n_));
      nz = noise_.data();
    }
    int order = orders_[i];
    while (order > filled_) --order;
    if (order == 1) std::copy(x, x + n_, sample_.begin());
    const float* s = sample_.data();
    if (order == 1) {
      first_order(i, i + 1, s, hist(0), nz, x);
    } else if (order == 2) {
      const AlphaSigma at = alpha_sigma(sigmas_[i + 1]), a1 = alpha_sigma(sigmas_[i - 1]),
                       a0 = alpha_sigma(sigmas_[i]);
      const float lt = lambda_of(at), l0 = lambda_of(a0), l1 = lambda_of(a1);
      const float h = lt - l1, h0 = l0 - l1, r0 = h0 / h, inv_r0 = 1.0f / r0;
      const float* m0 = hist(0);
      const float* m1 = hist(1);
      float c1, c2;
      if (algo_ == Algo::kDpm) {
        c1 = at.alpha / a1.alpha;
        c2 = at.sigma * (std::exp(h) - 1.0f);
      } else {
        c1 = at.sigma / a1.sigma;
        c2 = at.alpha * (std::exp(-h) - 1.0f);
      }
      const float c3 = 0.5f * c2;
      for (size_t k = 0; k < n_; ++k) {
        const float d1 = inv_r0 * (m0[k] - m1[k]);
        x[k] = (c1 * s[k] - c2 * m1[k]) - c3 * d1;
      }
    } else {
      const AlphaSigma at = alpha_sigma(sigmas_[i + 1]), a0 = alpha_sigma(sigmas_[i]),
                       a1 = alpha_sigma(sigmas_[i - 1]), a2 = alpha_sigma(sigmas_[i - 2]);
      const float lt = lambda_of(at), l0 = lambda_of(a0), l1 = lambda_of(a1), l2 = lambda_of(a2);
      const float h = lt - l2, h0 = l0 - l2, h1 = l1 - l2;
      const float r0 = h0 / h, r1 = h1 / h;
      (void)r1;
      const float i_r0 = 1.0f / r0;
      const float* m0 = hist(0);
      const float* m2 = hist(2);
      float c1, c2, c3;
      if (algo_ == Algo::kDpm) {
        const float eh = std::exp(h);
        c1 = at.alpha / a2.alpha;
        c2 = at.sigma * (eh - 1.0f);
        c3 = at.sigma * ((eh - 1.0f) / h - 1.0f);
        for (size_t k = 0; k < n_; ++k) {
          const float d11 = i_r0 * (m0[k] - m2[k]);
          x[k] = (c1 * s[k] - c2 * m2[k]) - c3 * d11;
        }
      } else {
        const float eh = std::exp(-h);
        c1 = at.sigma / a2.sigma;
        c2 = at.alpha * (eh - 1.0f);
        c3 = at.alpha * ((eh - 1.0f) / h + 1.0f);
        for (size_t k = 0; k < n_; ++k) {
          const float d11 = i_r0 * (m0[k] - m2[k]);
          x[k] = (c1 * s[k] - c2 * m2[k]) + c3 * d11;
        }
      }
    }
    return Status::ok();
  }

 private:
  std::vector<int> orders_;
  std::vector<float> sample_;
};

}  // namespace

Result<std::unique_ptr<Sampler>> make_dpm_multistep(const SamplerParams& p, const NoiseSchedule& s,
                                                    size_t n) {
  if (p.name == "dpmpp_2m")
    return std::unique_ptr<Sampler>(new DpmMultistep(p, s, n, Algo::kDpmPP, 2));
  if (p.name == "dpmpp_3m")
    return std::unique_ptr<Sampler>(new DpmMultistep(p, s, n, Algo::kDpmPP, 3));
  if (p.name == "dpmsolver_2m") {
    if (p.final_sigmas == "zero")
      return invalid_argument("dpmsolver_2m: final_sigmas=zero is not supported (use sigma_min)");
    return std::unique_ptr<Sampler>(new DpmMultistep(p, s, n, Algo::kDpm, 2));
  }
  if (p.name == "dpmpp_2m_sde")
    return std::unique_ptr<Sampler>(new DpmMultistep(p, s, n, Algo::kSdeDpmPP, 2));
  return invalid_argument("not a multistep DPM-Solver: " + p.name);
}

Result<std::unique_ptr<Sampler>> make_dpm_singlestep(const SamplerParams& p, const NoiseSchedule& s,
                                                     size_t n) {
  if (p.name == "dpmpp_2s")
    return std::unique_ptr<Sampler>(new DpmSinglestep(p, s, n, Algo::kDpmPP, 2));
  if (p.name == "dpmsolver_3s") {
    if (p.final_sigmas == "zero")
      return invalid_argument("dpmsolver_3s: final_sigmas=zero is not supported (use sigma_min)");
    return std::unique_ptr<Sampler>(new DpmSinglestep(p, s, n, Algo::kDpm, 3));
  }
  return invalid_argument("not a singlestep DPM-Solver: " + p.name);
}

}  // namespace duet::diffusion::detail
