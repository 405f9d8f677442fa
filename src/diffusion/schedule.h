// Training noise schedules (beta tables) as diffusers computes them, in float32.
//   alphabar = cumprod(1 - beta),  sigma = sqrt((1 - alphabar) / alphabar),  lambda = log(alpha /
//   sigma)
// plus the sigma <-> real-valued timestep maps used by k-diffusion-style samplers.
#pragma once

#include <string>
#include <vector>

#include "duet/status.h"

namespace duet::diffusion {

enum class BetaSchedule { kLinear, kScaledLinear, kCosine };
enum class Prediction { kEpsilon, kVPrediction };

// "linear", "scaled_linear", "cosine" (alias "squaredcos_cap_v2").
Result<BetaSchedule> parse_beta_schedule(const std::string& s);
const char* beta_schedule_name(BetaSchedule b);  // diffusers spelling
// "epsilon"/"eps", "v_prediction"/"v".
Result<Prediction> parse_prediction(const std::string& s);

struct ScheduleParams {
  BetaSchedule beta = BetaSchedule::kLinear;
  int num_train_timesteps = 1000;
  Prediction prediction = Prediction::kEpsilon;
  // Defaults per schedule when <= 0: linear 1e-4..0.02, scaled_linear 0.00085..0.012.
  double beta_start = -1;
  double beta_end = -1;
};

class NoiseSchedule {
 public:
  static Result<NoiseSchedule> create(const ScheduleParams& p);

  const ScheduleParams& params() const { return params_; }
  int num_train_timesteps() const { return params_.num_train_timesteps; }
  Prediction prediction() const { return params_.prediction; }
  const std::vector<float>& betas() const { return betas_; }
  // float32, bit-identical to diffusers' torch.cumprod(1 - betas).
  const std::vector<float>& alphas_cumprod() const { return alphas_cumprod_; }
  // sigma_k = ((1 - ac) / ac) ** 0.5 computed in float32 (as diffusers' set_timesteps does).
  const std::vector<float>& sigmas_f32() const { return sigmas_f32_; }
  // log of sigmas_f32, in float32 (np.log of a float32 array).
  const std::vector<float>& log_sigmas_f32() const { return log_sigmas_f32_; }
  // lambda_k = log(sqrt(ac)) - log(sqrt(1 - ac)) (float32).
  float lambda(int k) const;

  // diffusers' _sigma_to_t: piecewise-linear interpolation of log sigma over the training table.
  double sigma_to_t(double sigma) const;
  // np.interp(t, arange(T), sigmas_f32): sigma at a real-valued timestep (linear in sigma).
  double t_to_sigma_interp(double t) const;
  // Inverse of sigma_to_t (log-sigma interpolation, float64), as the analytic fixture model uses.
  double t_to_alphabar_logsigma(double t) const;

 private:
  ScheduleParams params_;
  std::vector<float> betas_, alphas_cumprod_, sigmas_f32_, log_sigmas_f32_;
};

// Karras et al. (2022) sigmas, rho = 7, in float64: n values from sigma_max down to sigma_min.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int n);

}  // namespace duet::diffusion
