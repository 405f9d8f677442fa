// Replays diffusers golden sampler fixtures (tests/fixtures/samplers, format described in its
// README) against duet's samplers and the analytic Gaussian denoiser.
#pragma once

#include <string>
#include <vector>

#include "diffusion/fixture_file.h"
#include "diffusion/sampler.h"
#include "diffusion/schedule.h"

namespace duet::diffusion {

// Exact posterior-mean denoiser for data x0 ~ N(mu, s^2 I) under the VP process, evaluated in
// float64 from float32 inputs, output rounded to float32 (fixture README "Analytic model").
class AnalyticGaussianModel {
 public:
  AnalyticGaussianModel(const NoiseSchedule& sched, std::vector<float> mu, double s)
      : sched_(sched), mu_(std::move(mu)), s_(s) {}
  // alphabar(t) by log-sigma interpolation of the training table.
  double alphabar(double t) const { return sched_.t_to_alphabar_logsigma(t); }
  Status operator()(const float* x, float t, float* out) const;

 private:
  const NoiseSchedule& sched_;
  std::vector<float> mu_;
  double s_;
};

// Fixture metadata -> duet schedule + sampler parameters.
struct FixtureConfig {
  ScheduleParams schedule;
  SamplerParams sampler;
  std::string description;  // e.g. "dpmpp_2m karras" (duet spelling)
};
Result<FixtureConfig> fixture_config(const FixtureFile& f);

struct CallError {
  float t = 0;
  double step_abs = 0;  // step-wise: max |mine - ref| for this call's output
  double step_rel = 0;  // step-wise: max |mine - ref| / (1 + |ref|)
  double e2e_abs = 0;   // end-to-end trajectory: max |mine - ref| after this call
};

struct FixtureCheck {
  std::string file, case_id, description;
  int num_calls = 0;
  std::vector<CallError> calls;
  double step_max_abs = 0, step_max_rel = 0;
  double step_tol_rel = 1e-5;  // |err| <= tol * (1 + |ref|)
  double e2e_max_abs = 0, e2e_tol = 0;
  double alphabar_max_rel = 0;  // model-call alphabar vs the fixture's record
  bool step_pass = false, e2e_pass = false;
  std::vector<std::string> problems;  // structural mismatches (timesteps, sigmas, noise, ...)
  bool pass() const { return step_pass && e2e_pass && problems.empty(); }
};

// Loads and replays one fixture. A non-ok Result means the file is unreadable / malformed /
// unsupported (message names the file); numeric failures are reported in FixtureCheck.
Result<FixtureCheck> check_sampler_fixture(const std::string& path);

}  // namespace duet::diffusion
