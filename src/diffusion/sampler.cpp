#include "diffusion/sampler.h"

#include <algorithm>
#include <cmath>

#include "diffusion/sampler_internal.h"

namespace duet::diffusion {

const std::vector<std::string>& sampler_names() {
  static const std::vector<std::string> kNames = {
      "ddpm",     "ddim",         "euler",        "euler_a",  "heun",     "dpm2",         "lms",
      "dpmpp_2s", "dpmsolver_3s", "dpmsolver_2m", "dpmpp_2m", "dpmpp_3m", "dpmpp_2m_sde", "unipc"};
  return kNames;
}

void Sampler::begin(int start_call) {
  next_call_ = std::clamp(start_call, 0, num_calls());
  reset_state(next_call_);
}

Status Sampler::step(int call, const float* model_output, float* x, NoiseSource& noise) {
  if (call != next_call_)
    return invalid_argument("sampler " + params_.name + ": step for call " + std::to_string(call) +
                            " but the next call is " + std::to_string(next_call_));
  if (call >= num_calls())
    return invalid_argument("sampler " + params_.name + ": call " + std::to_string(call) +
                            " past the last call " + std::to_string(num_calls() - 1));
  DUET_RETURN_IF_ERROR(do_step(call, model_output, x, noise));
  ++next_call_;
  return Status::ok();
}

Status Sampler::run(float* x, const DenoiseFn& denoise, NoiseSource& noise,
                    const ProgressFn& progress, int start_call) {
  if (!denoise) return invalid_argument("sampler run: no denoise callback");
  begin(start_call);
  for (int c = next_call_; c < num_calls(); ++c) {
    const float d = input_divisor(c);
    const float* in = x;
    if (d != 1.0f) {
      for (size_t i = 0; i < n_; ++i) scaled_[i] = x[i] / d;
      in = scaled_.data();
    }
    DUET_RETURN_IF_ERROR(denoise(in, timesteps_[c], model_out_.data()));
    DUET_RETURN_IF_ERROR(step(c, model_out_.data(), x, noise));
    if (progress) progress(c + 1, num_calls());
  }
  return Status::ok();
}

int Sampler::start_call_for_strength(double strength) const {
  const int steps = params_.steps;
  strength = std::clamp(strength, 0.0, 1.0);
  const int init_timestep = std::min(static_cast<int>(steps * strength), steps);
  const int t_start = std::max(steps - init_timestep, 0);
  return std::min(t_start * order_, num_calls());
}

Result<std::unique_ptr<Sampler>> make_sampler(const SamplerParams& p, const NoiseSchedule& s,
                                              size_t numel) {
  if (numel == 0) return invalid_argument("sampler: latent size is 0");
  if (p.steps < 1 || p.steps > 1000)
    return invalid_argument("sampler: steps must be in [1, 1000], got " + std::to_string(p.steps));
  if (p.steps > s.num_train_timesteps())
    return invalid_argument("sampler: steps exceed num_train_timesteps");
  if (!p.spacing.empty() && p.spacing != "leading" && p.spacing != "trailing" &&
      p.spacing != "linspace")
    return invalid_argument("sampler: unknown timestep spacing '" + p.spacing +
                            "' (expected leading, trailing or linspace)");
  if (!p.final_sigmas.empty() && p.final_sigmas != "zero" && p.final_sigmas != "sigma_min")
    return invalid_argument("sampler: final_sigmas must be zero or sigma_min, got '" +
                            p.final_sigmas + "'");
  const std::string& n = p.name;
  if (n == "ddim") return detail::make_ddim(p, s, numel);
  if (n == "ddpm") return detail::make_ddpm(p, s, numel);
  if (n == "euler" || n == "euler_a" || n == "heun" || n == "dpm2" || n == "lms")
    return detail::make_kdiffusion(p, s, numel);
  if (n == "dpmpp_2m" || n == "dpmpp_3m" || n == "dpmsolver_2m" || n == "dpmpp_2m_sde")
    return detail::make_dpm_multistep(p, s, numel);
  if (n == "dpmpp_2s" || n == "dpmsolver_3s") return detail::make_dpm_singlestep(p, s, numel);
  if (n == "unipc") return detail::make_unipc(p, s, numel);
  std::string all;
  for (const auto& k : sampler_names()) all += (all.empty() ? "" : ", ") + k;
  return invalid_argument("unknown sampler '" + n + "' (known: " + all + ")");
}

namespace detail {

std::vector<int64_t> ddim_timesteps(const std::string& spacing, int T, int n, int offset) {
  std::vector<int64_t> ts(n);
  if (spacing == "linspace") {
    const double step = static_cast<double>(T - 1) / (n - 1 > 0 ? n - 1 : 1);
    for (int i = 0; i < n; ++i) {
      const double v = (n > 1 && i == n - 1) ? T - 1 : i * step;
      ts[n - 1 - i] = static_cast<int64_t>(np_round(v));
    }
  } else if (spacing == "trailing") {
    const double ratio = static_cast<double>(T) / n;
    const int len = static_cast<int>(std::ceil((0.0 - T) / -ratio));
    ts.resize(len);
    for (int i = 0; i < len; ++i) ts[i] = static_cast<int64_t>(np_round(T + i * -ratio)) - 1;
  } else {  // leading
    const int ratio = T / n;
    for (int i = 0; i < n; ++i) ts[n - 1 - i] = static_cast<int64_t>(i) * ratio + offset;
  }
  return ts;
}

std::vector<int64_t> dpm_timesteps(const std::string& spacing, int T, int n, int offset) {
  std::vector<int64_t> ts;
  if (spacing == "trailing") return ddim_timesteps("trailing", T, n, offset);
  if (spacing == "leading") {
    const int ratio = T / (n + 1);
    for (int i = n; i >= 1; --i) ts.push_back(static_cast<int64_t>(i) * ratio + offset);
    return ts;
  }
  const double step = static_cast<double>(T - 1) / n;
  for (int i = n; i >= 1; --i) {
    const double v = i == n ? T - 1 : i * step;
    ts.push_back(static_cast<int64_t>(np_round(v)));
  }
  return ts;
}

std::vector<double> kdiff_timesteps(const std::string& spacing, int T, int n, int offset) {
  std::vector<double> ts;
  if (spacing == "leading") {
    const int ratio = T / n;
    for (int i = n - 1; i >= 0; --i) ts.push_back(static_cast<double>(i) * ratio + offset);
  } else if (spacing == "trailing") {
    for (int64_t t : ddim_timesteps("trailing", T, n, 0)) ts.push_back(static_cast<double>(t));
  } else {
    const double step = n > 1 ? static_cast<double>(T - 1) / (n - 1) : 0.0;
    for (int i = n - 1; i >= 0; --i) ts.push_back((n > 1 && i == n - 1) ? T - 1 : i * step);
  }
  return ts;
}

std::vector<double> karras_from_table(const NoiseSchedule& s, int n) {
  const auto& sig = s.sigmas_f32();
  return karras_sigmas(sig.front(), sig.back(), n);
}

}  // namespace detail
}  // namespace duet::diffusion
