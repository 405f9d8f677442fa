#include "diffusion/schedule.h"

#include <algorithm>
#include <cmath>

namespace duet::diffusion {

Result<BetaSchedule> parse_beta_schedule(const std::string& s) {
  if (s == "linear") return BetaSchedule::kLinear;
  if (s == "scaled_linear") return BetaSchedule::kScaledLinear;
  if (s == "cosine" || s == "squaredcos_cap_v2") return BetaSchedule::kCosine;
  return invalid_argument("unknown beta schedule '" + s +
                          "' (expected linear, scaled_linear or cosine)");
}

const char* beta_schedule_name(BetaSchedule b) {
  switch (b) {
    case BetaSchedule::kLinear:
      return "linear";
    case BetaSchedule::kScaledLinear:
      return "scaled_linear";
    case BetaSchedule::kCosine:
      return "squaredcos_cap_v2";
  }
  return "?";
}

Result<Prediction> parse_prediction(const std::string& s) {
  if (s == "epsilon" || s == "eps") return Prediction::kEpsilon;
  if (s == "v_prediction" || s == "v") return Prediction::kVPrediction;
  return invalid_argument("unknown prediction type '" + s + "' (expected epsilon or v_prediction)");
}

namespace {

// torch.linspace(start, end, steps, dtype=float32) as the AVX2 CPU kernel computes it (the
// reference tables were produced that way): float step; each 8-wide vector chunk (processed in
// pairs, the tail scalar) gets a base value start + step*idx (or end - step*(steps-idx-1) past
// the halfway point) evaluated with a fused multiply-add, then base + j*step for its lanes.
std::vector<float> torch_linspace_f32(double start_d, double end_d, int steps) {
  std::vector<float> out(steps);
  const float start = static_cast<float>(start_d), end = static_cast<float>(end_d);
  if (steps == 1) {
    out[0] = start;
    return out;
  }
  const float step = (end - start) / static_cast<float>(steps - 1);
  const int halfway = steps / 2;
  auto scalar = [&](int i) {
    return i < halfway ? std::fma(step, static_cast<float>(i), start)
                       : std::fma(-step, static_cast<float>(steps - i - 1), end);
  };
  constexpr int kVec = 8;
  int i = 0;
  for (; i + 2 * kVec <= steps; i += 2 * kVec) {
    for (int half = 0; half < 2; ++half) {
      const int b = i + half * kVec;
      const float base = scalar(b);
      out[b] = base;
      for (int j = 1; j < kVec; ++j) out[b + j] = base + static_cast<float>(j) * step;
    }
  }
  for (; i < steps; ++i) out[i] = scalar(i);
  return out;
}

}  // namespace

Result<NoiseSchedule> NoiseSchedule::create(const ScheduleParams& p) {
  if (p.num_train_timesteps < 2 || p.num_train_timesteps > 100000)
    return invalid_argument("num_train_timesteps must be in [2, 100000], got " +
                            std::to_string(p.num_train_timesteps));
  NoiseSchedule s;
  s.params_ = p;
  const int T = p.num_train_timesteps;
  switch (p.beta) {
    case BetaSchedule::kLinear: {
      const double b0 = p.beta_start > 0 ? p.beta_start : 1e-4;
      const double b1 = p.beta_end > 0 ? p.beta_end : 0.02;
      s.params_.beta_start = b0;
      s.params_.beta_end = b1;
      s.betas_ = torch_linspace_f32(b0, b1, T);
      break;
    }
    case BetaSchedule::kScaledLinear: {
      const double b0 = p.beta_start > 0 ? p.beta_start : 0.00085;
      const double b1 = p.beta_end > 0 ? p.beta_end : 0.012;
      s.params_.beta_start = b0;
      s.params_.beta_end = b1;
      s.betas_ = torch_linspace_f32(std::sqrt(b0), std::sqrt(b1), T);
      for (float& b : s.betas_) b = b * b;
      break;
    }
    case BetaSchedule::kCosine: {
      // diffusers betas_for_alpha_bar(T, max_beta=0.999, "cosine"): float64, then float32.
      auto abar = [](double t) {
        const double c = std::cos((t + 0.008) / 1.008 * M_PI / 2);
        return c * c;
      };
      s.betas_.resize(T);
      for (int i = 0; i < T; ++i) {
        const double t1 = static_cast<double>(i) / T, t2 = static_cast<double>(i + 1) / T;
        s.betas_[i] = static_cast<float>(std::min(1 - abar(t2) / abar(t1), 0.999));
      }
      break;
    }
  }
  // torch.cumprod on CPU accumulates in the accumulation type (double for float) and rounds
  // every partial product to float32.
  s.alphas_cumprod_.resize(T);
  double acc = 1.0;
  for (int i = 0; i < T; ++i) {
    const float alpha = 1.0f - s.betas_[i];
    acc *= static_cast<double>(alpha);
    s.alphas_cumprod_[i] = static_cast<float>(acc);
  }
  s.sigmas_f32_.resize(T);
  s.log_sigmas_f32_.resize(T);
  for (int i = 0; i < T; ++i) {
    const float ac = s.alphas_cumprod_[i];
    s.sigmas_f32_[i] = std::sqrt((1.0f - ac) / ac);
    s.log_sigmas_f32_[i] = std::log(s.sigmas_f32_[i]);
  }
  return s;
}

float NoiseSchedule::lambda(int k) const {
  const float ac = alphas_cumprod_[k];
  return std::log(std::sqrt(ac)) - std::log(std::sqrt(1.0f - ac));
}

double NoiseSchedule::sigma_to_t(double sigma) const {
  const int T = num_train_timesteps();
  const double log_sigma = std::log(std::max(sigma, 1e-10));
  // low_idx = (number of table entries with log_sigma >= log_sigmas[k]) - 1 along the increasing
  // table, i.e. the last index whose log sigma is <= log_sigma; clipped to T - 2.
  int low = 0;
  {
    // cumsum(dists >= 0).argmax(): first index where the running count reaches its maximum.
    int count = 0, best = -1, best_idx = 0;
    for (int k = 0; k < T; ++k) {
      if (log_sigma - static_cast<double>(log_sigmas_f32_[k]) >= 0) ++count;
      if (count > best) {
        best = count;
        best_idx = k;
      }
    }
    low = std::min(best_idx, T - 2);
  }
  const int high = low + 1;
  const double lo = log_sigmas_f32_[low], hi = log_sigmas_f32_[high];
  double w = (lo - log_sigma) / (lo - hi);
  w = std::clamp(w, 0.0, 1.0);
  return (1 - w) * low + w * high;
}

double NoiseSchedule::t_to_sigma_interp(double t) const {
  const int T = num_train_timesteps();
  if (t <= 0) return sigmas_f32_[0];
  if (t >= T - 1) return sigmas_f32_[T - 1];
  const int lo = static_cast<int>(std::floor(t));
  const double w = t - lo;
  const double a = sigmas_f32_[lo], b = sigmas_f32_[lo + 1];
  // numpy interp: slope * (x - xp[j]) + fp[j]
  return (b - a) * w + a;
}

double NoiseSchedule::t_to_alphabar_logsigma(double t) const {
  const int T = num_train_timesteps();
  const double tc = std::clamp(t, 0.0, static_cast<double>(T - 1));
  const int lo = static_cast<int>(std::floor(tc));
  const int hi = std::min(lo + 1, T - 1);
  const double w = tc - lo;
  auto sig = [&](int k) {
    const double ac = alphas_cumprod_[k];
    return std::sqrt((1 - ac) / ac);
  };
  const double ls = (1 - w) * std::log(sig(lo)) + w * std::log(sig(hi));
  const double sg = std::exp(ls);
  return 1.0 / (1.0 + sg * sg);
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n) {
  const double rho = 7.0;
  const double min_inv = std::pow(sigma_min, 1 / rho), max_inv = std::pow(sigma_max, 1 / rho);
  std::vector<double> out(n);
  for (int i = 0; i < n; ++i) {
    // np.linspace(0, 1, n): i * step with step = 1/(n-1); last element exactly 1.
    const double ramp = n == 1 ? 0.0 : (i == n - 1 ? 1.0 : i * (1.0 / (n - 1)));
    out[i] = std::pow(max_inv + ramp * (min_inv - max_inv), rho);
  }
  return out;
}

}  // namespace duet::diffusion
