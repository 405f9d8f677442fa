// Sigma-space ("k-diffusion") samplers as diffusers implements them:
//   euler   EulerDiscreteScheduler          euler_a EulerAncestralDiscreteScheduler
//   heun    HeunDiscreteScheduler (2 calls/step, 2n-1 calls)
//   dpm2    KDPM2DiscreteScheduler (2 calls/step, 2n-1 calls)
//   lms     LMSDiscreteScheduler (linear multistep, order 4)
// Latents are x = x0 + sigma * eps; the model sees x / sqrt(sigma^2 + 1).
#include <algorithm>
#include <cmath>

#include "diffusion/sampler_internal.h"

namespace duet::diffusion::detail {
namespace {

enum class Kind { kEuler, kEulerA, kHeun, kDpm2, kLms };

class KDiffSampler final : public Sampler {
 public:
  KDiffSampler(const SamplerParams& p, const NoiseSchedule& s, size_t n, Kind kind)
      : Sampler(p, s, n), kind_(kind) {
    const int T = s.num_train_timesteps();
    const std::string spacing = p.spacing.empty() ? "linspace" : p.spacing;
    std::vector<double> t = kdiff_timesteps(spacing, T, p.steps, p.steps_offset);
    if (kind == Kind::kEuler)  // Euler builds its timesteps in float32
      for (double& v : t) v = static_cast<float>(v);
    std::vector<double> sig;
    if (p.karras) {
      sig = karras_from_table(s, p.steps);
      t.clear();
      for (double sg : sig) t.push_back(s.sigma_to_t(sg));
    } else {
      for (double v : t) sig.push_back(s.t_to_sigma_interp(v));
    }
    const bool sigma_min = p.final_sigmas == "sigma_min";
    std::vector<float> base(sig.begin(), sig.end());  // float32 like diffusers
    base.push_back(sigma_min ? s.sigmas_f32()[0] : 0.0f);
    const int steps = p.steps;
    base_sigmas_ = base;

    if (kind == Kind::kHeun) {
      order_ = 2;
      sigmas_.push_back(base[0]);
      for (int j = 1; j < steps; ++j) sigmas_.insert(sigmas_.end(), {base[j], base[j]});
      sigmas_.push_back(base[steps]);
      timesteps_.push_back(static_cast<float>(t[0]));
      for (int j = 1; j < steps; ++j)
        timesteps_.insert(timesteps_.end(), {static_cast<float>(t[j]), static_cast<float>(t[j])});
    } else if (kind == Kind::kDpm2) {
      order_ = 2;
      interp_.assign(steps + 1, 0.0f);
      for (int j = 1; j <= steps; ++j) {
        const float lo = std::log(base[j]), hi = std::log(base[j - 1]);
        interp_[j] = std::exp(hi - (hi - lo) * 0.5f);  // torch.lerp(lo, hi, 0.5)
      }
      interp_[0] = std::nanf("");
      sigmas_.push_back(base[0]);
      for (int j = 1; j <= steps; ++j) sigmas_.insert(sigmas_.end(), {base[j], base[j]});
      sigmas_.push_back(base[steps]);
      timesteps_.push_back(static_cast<float>(t[0]));
      for (int j = 1; j < steps; ++j) {
        timesteps_.push_back(static_cast<float>(s.sigma_to_t(interp_[j])));
        timesteps_.push_back(static_cast<float>(t[j]));
      }
    } else {
      sigmas_ = base;
      for (double v : t) timesteps_.push_back(static_cast<float>(v));
    }
    // init_noise_sigma = max sigma (linspace/trailing) or sqrt(max^2 + 1) (leading).
    const float mx = *std::max_element(base.begin(), base.end());
    init_noise_sigma_ = spacing == "leading" ? std::sqrt(mx * mx + 1.0f) : mx;

    if (kind == Kind::kHeun || kind == Kind::kDpm2) saved_.resize(n);
    if (kind == Kind::kHeun) prev_deriv_.resize(n);
    if (kind == Kind::kEulerA) noise_.resize(n);
    if (kind == Kind::kLms) {
      lms_order_ = std::clamp(p.lms_order, 1, 4);
      derivs_.assign(lms_order_, std::vector<float>(n));
      lms_coeffs_.assign(steps, std::vector<double>(lms_order_, 0.0));
      for (int i = 0; i < steps; ++i) {
        const int ord = std::min(i + 1, lms_order_);
        for (int j = 0; j < ord; ++j) lms_coeffs_[i][j] = lms_coefficient(ord, i, j);
      }
    }
  }

  bool stochastic() const override { return kind_ == Kind::kEulerA; }

  float input_divisor(int call) const override {
    float s;
    if (kind_ == Kind::kDpm2 && call % 2 == 1)
      s = interp_[(call + 1) / 2];
    else
      s = sigmas_[call];
    return std::sqrt(s * s + 1.0f);
  }

  Status add_noise(const float* x0, const float* noise, int call, float* out) const override {
    if (call < 0 || call >= num_calls()) return invalid_argument("add_noise: call out of range");
    const float s = sigmas_[call];
    for (size_t i = 0; i < n_; ++i) out[i] = x0[i] + noise[i] * s;
    return Status::ok();
  }

 protected:
  void reset_state(int) override { num_derivs_ = 0; }

  // x0 prediction for model output m at sample x, noise level s.
  void pred_x0(const float* x, const float* m, float s, float* out) const {
    if (sched_.prediction() == Prediction::kVPrediction) {
      const float s2p1 = s * s + 1.0f;
      const float c = -s / std::sqrt(s2p1);
      for (size_t i = 0; i < n_; ++i) out[i] = m[i] * c + x[i] / s2p1;
    } else {
      for (size_t i = 0; i < n_; ++i) out[i] = x[i] - s * m[i];
    }
  }

  Status do_step(int call, const float* m, float* x, NoiseSource& noise) override {
    float* x0 = model_out_.data() == m ? scaled_.data() : model_out_.data();  // scratch != m
    switch (kind_) {
      case Kind::kEuler: {
        const float s = sigmas_[call], s_next = sigmas_[call + 1];
        pred_x0(x, m, s, x0);
        const float dt = s_next - s;
        for (size_t i = 0; i < n_; ++i) x[i] = x[i] + ((x[i] - x0[i]) / s) * dt;
        return Status::ok();
      }
      case Kind::kEulerA: {
        const float sf = sigmas_[call], st = sigmas_[call + 1];
        const float up = std::sqrt(st * st * (sf * sf - st * st) / (sf * sf));
        const float down = std::sqrt(st * st - up * up);
        pred_x0(x, m, sf, x0);
        const float dt = down - sf;
        for (size_t i = 0; i < n_; ++i) x[i] = x[i] + ((x[i] - x0[i]) / sf) * dt;
        DUET_RETURN_IF_ERROR(noise.next(noise_.data(), n_));
        for (size_t i = 0; i < n_; ++i) x[i] = x[i] + noise_[i] * up;
        return Status::ok();
      }
      case Kind::kHeun: {
        if (call % 2 == 0) {
          const float s = sigmas_[call], s_next = sigmas_[call + 1];
          pred_x0(x, m, s, x0);
          dt_ = s_next - s;
          for (size_t i = 0; i < n_; ++i) {
            const float d = (x[i] - x0[i]) / s;
            prev_deriv_[i] = d;
            saved_[i] = x[i];
            x[i] = x[i] + d * dt_;
          }
        } else {
          const float s_next = sigmas_[call];
          pred_x0(x, m, s_next, x0);
          for (size_t i = 0; i < n_; ++i) {
            float d = (x[i] - x0[i]) / s_next;
            d = (prev_deriv_[i] + d) / 2.0f;
            x[i] = saved_[i] + d * dt_;
          }
        }
        return Status::ok();
      }
      case Kind::kDpm2: {
        if (call % 2 == 0) {
          const int j = call / 2;
          const float s = base_sigmas_[j], si = interp_[j + 1];
          pred_x0(x, m, s, x0);
          const float dt = si - s;
          for (size_t i = 0; i < n_; ++i) {
            const float d = (x[i] - x0[i]) / s;
            saved_[i] = x[i];
            x[i] = x[i] + d * dt;
          }
        } else {
          const int j = (call + 1) / 2;
          const float s = base_sigmas_[j - 1], si = interp_[j], s_next = base_sigmas_[j];
          pred_x0(x, m, si, x0);
          const float dt = s_next - s;
          for (size_t i = 0; i < n_; ++i) {
            const float d = (x[i] - x0[i]) / si;
            x[i] = saved_[i] + d * dt;
          }
        }
        return Status::ok();
      }
      case Kind::kLms: {
        const float s = sigmas_[call];
        pred_x0(x, m, s, x0);
        // ring of the last lms_order_ derivatives; newest at index (head_)
        head_ = (head_ + 1) % lms_order_;
        std::vector<float>& d = derivs_[head_];
        for (size_t i = 0; i < n_; ++i) d[i] = (x[i] - x0[i]) / s;
        num_derivs_ = std::min(num_derivs_ + 1, lms_order_);
        const int ord = std::min(call + 1, lms_order_);
        const int terms = std::min(ord, num_derivs_);
        for (size_t i = 0; i < n_; ++i) {
          float acc = 0.0f;
          for (int k = 0; k < terms; ++k) {
            const float c = static_cast<float>(lms_coeffs_[call][k]);
            const float term = c * derivs_[(head_ - k + lms_order_) % lms_order_][i];
            acc = k == 0 ? term : acc + term;
          }
          x[i] = x[i] + acc;
        }
        return Status::ok();
      }
    }
    return internal_error("kdiffusion: bad kind");
  }

 private:
  // Integral over [sigma_t, sigma_{t+1}] of the Lagrange basis polynomial j on sigmas t..t-ord+1
  // (diffusers get_lms_coefficient; its scipy quad is exact for these low-degree polynomials).
  double lms_coefficient(int ord, int t, int j) const {
    auto basis = [&](double tau) {
      double prod = 1.0;
      for (int k = 0; k < ord; ++k) {
        if (k == j) continue;
        prod *= (tau - sigmas_[t - k]) / (static_cast<double>(sigmas_[t - j]) - sigmas_[t - k]);
      }
      return prod;
    };
    static const double xg[5] = {-0.9061798459386640, -0.5384693101056831, 0.0, 0.5384693101056831,
                                 0.9061798459386640};
    static const double wg[5] = {0.2369268850561891, 0.4786286704993665, 0.5688888888888889,
                                 0.4786286704993665, 0.2369268850561891};
    const double a = sigmas_[t], b = sigmas_[t + 1];
    double sum = 0;
    for (int q = 0; q < 5; ++q) sum += wg[q] * basis(0.5 * (b - a) * xg[q] + 0.5 * (a + b));
    return sum * 0.5 * (b - a);
  }

  Kind kind_;
  std::vector<float> base_sigmas_, interp_;
  std::vector<float> saved_, prev_deriv_, noise_;
  float dt_ = 0;
  int lms_order_ = 4, num_derivs_ = 0, head_ = 0;
  std::vector<std::vector<float>> derivs_;
  std::vector<std::vector<double>> lms_coeffs_;
};

}  // namespace

Result<std::unique_ptr<Sampler>> make_kdiffusion(const SamplerParams& p, const NoiseSchedule& s,
                                                 size_t n) {
  Kind k;
  if (p.name == "euler")
    k = Kind::kEuler;
  else if (p.name == "euler_a")
    k = Kind::kEulerA;
  else if (p.name == "heun")
    k = Kind::kHeun;
  else if (p.name == "dpm2")
    k = Kind::kDpm2;
  else if (p.name == "lms")
    k = Kind::kLms;
  else
    return invalid_argument("not a k-diffusion sampler: " + p.name);
  if (k == Kind::kLms && (p.lms_order < 1 || p.lms_order > 4))
    return invalid_argument("lms: order must be in [1, 4]");
  return std::unique_ptr<Sampler>(new KDiffSampler(p, s, n, k));
}

}  // namespace duet::diffusion::detail
