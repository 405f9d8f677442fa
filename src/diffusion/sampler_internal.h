// Shared helpers for the sampler implementations (not a public header).
// Scalar coefficients are computed in float32 in the same order as diffusers' torch code, so
// results agree with diffusers to float32 rounding.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "diffusion/sampler.h"

namespace duet::diffusion::detail {

struct AlphaSigma {
  float alpha, sigma;
};
// diffusers _sigma_to_alpha_sigma_t (float32).
inline AlphaSigma alpha_sigma(float s) {
  const float a = 1.0f / std::sqrt(s * s + 1.0f);
  return {a, s * a};
}
inline float lambda_of(AlphaSigma a) { return std::log(a.alpha) - std::log(a.sigma); }

// numpy round (half to even).
inline double np_round(double v) { return std::nearbyint(v); }

// Timestep lists (descending) as diffusers' set_timesteps builds them.
// DDIM/DDPM style: linspace(0, T-1, n) / leading T//n / trailing.
std::vector<int64_t> ddim_timesteps(const std::string& spacing, int T, int n, int offset);
// DPM-Solver / UniPC style: linspace(0, T-1, n+1)[:-1] / leading T//(n+1) / trailing.
std::vector<int64_t> dpm_timesteps(const std::string& spacing, int T, int n, int offset);
// Euler-family style, float64: linspace(0, T-1, n) / leading / trailing.
std::vector<double> kdiff_timesteps(const std::string& spacing, int T, int n, int offset);

// Karras sigmas from the float32 training table (sigma_min = table[0], sigma_max = table[T-1]).
std::vector<double> karras_from_table(const NoiseSchedule& s, int n);

Result<std::unique_ptr<Sampler>> make_ddim(const SamplerParams&, const NoiseSchedule&, size_t);
Result<std::unique_ptr<Sampler>> make_ddpm(const SamplerParams&, const NoiseSchedule&, size_t);
Result<std::unique_ptr<Sampler>> make_kdiffusion(const SamplerParams&, const NoiseSchedule&,
                                                 size_t);  // euler euler_a heun dpm2 lms
Result<std::unique_ptr<Sampler>> make_dpm_multistep(const SamplerParams&, const NoiseSchedule&,
                                                    size_t);
Result<std::unique_ptr<Sampler>> make_dpm_singlestep(const SamplerParams&, const NoiseSchedule&,
                                                     size_t);
Result<std::unique_ptr<Sampler>> make_unipc(const SamplerParams&, const NoiseSchedule&, size_t);

}  // namespace duet::diffusion::detail
