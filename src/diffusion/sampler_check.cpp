#include "diffusion/sampler_check.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

namespace duet::diffusion {

Status AnalyticGaussianModel::operator()(const float* x, float t, float* out) const {
  const double ab = alphabar(t);
  const double a = std::sqrt(ab), b = std::sqrt(1.0 - ab);
  const double s2 = s_ * s_;
  const double denom = a * a * s2 + b * b;
  const bool v = sched_.prediction() == Prediction::kVPrediction;
  for (size_t i = 0; i < mu_.size(); ++i) {
    const double xi = x[i], mu = mu_[i];
    const double eps = b * (xi - a * mu) / denom;
    if (v) {
      const double x0 = (xi - b * eps) / a;
      out[i] = static_cast<float>(a * eps - b * x0);
    } else {
      out[i] = static_cast<float>(eps);
    }
  }
  return Status::ok();
}

namespace {

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Python's json.dumps writes NaN / Infinity / -Infinity bare; quote them so that strict JSON
// parsers accept the text (numeric readers then fall back to their defaults / parse the string).
std::string quote_nonfinite(const std::string& in) {
  std::string out;
  bool in_str = false;
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (in_str) {
      out += c;
      if (c == '\\' && i + 1 < in.size())
        out += in[++i];
      else if (c == '"')
        in_str = false;
      continue;
    }
    if (c == '"') {
      in_str = true;
      out += c;
      continue;
    }
    bool matched = false;
    for (const char* tok : {"-Infinity", "Infinity", "NaN"}) {
      const size_t len = std::strlen(tok);
      if (in.compare(i, len, tok) == 0) {
        out += '"';
        out += tok;
        out += '"';
        i += len - 1;
        matched = true;
        break;
      }
    }
    if (!matched) out += c;
  }
  return out;
}

Result<nlohmann::json> meta_json(const FixtureFile& f, const std::string& key) {
  DUET_ASSIGN_OR_RETURN(std::string s, f.meta(key));
  try {
    return nlohmann::json::parse(quote_nonfinite(s));
  } catch (const std::exception& e) {
    return data_loss(f.path() + ": metadata '" + key + "' is not valid JSON");
  }
}

template <typename T>
T cfg(const nlohmann::json& c, const char* key, T dflt) {
  if (!c.contains(key) || c[key].is_null()) return dflt;
  try {
    return c[key].get<T>();
  } catch (...) {
    return dflt;
  }
}

// Noise source that replays the stored draws and checks they happen at the recorded steps.
class FixtureNoise : public NoiseSource {
 public:
  FixtureNoise(const std::vector<std::vector<float>>* draws, const std::vector<int>* steps)
      : draws_(draws), steps_(steps) {}
  int current_step = 0;
  std::string error;
  size_t used = 0;
  Status next(float* out, size_t n) override {
    if (used >= draws_->size())
      return invalid_argument("sampler drew noise " + std::to_string(used) + " at call " +
                              std::to_string(current_step) + " but the fixture stores only " +
                              std::to_string(draws_->size()) + " draws");
    if ((*steps_)[used] != current_step && error.empty())
      error = "noise draw " + std::to_string(used) + " happened at call " +
              std::to_string(current_step) + ", fixture recorded call " +
              std::to_string((*steps_)[used]);
    if ((*draws_)[used].size() != n) return invalid_argument("noise draw size mismatch");
    std::copy((*draws_)[used].begin(), (*draws_)[used].end(), out);
    ++used;
    return Status::ok();
  }

 private:
  const std::vector<std::vector<float>>* draws_;
  const std::vector<int>* steps_;
};

}  // namespace

Result<FixtureConfig> fixture_config(const FixtureFile& f) {
  DUET_ASSIGN_OR_RETURN(std::string cls, f.meta("scheduler_class"));
  DUET_ASSIGN_OR_RETURN(nlohmann::json c, meta_json(f, "config"));
  nlohmann::json step_kwargs = nlohmann::json::object();
  if (f.has_meta("step_kwargs")) {
    DUET_ASSIGN_OR_RETURN(step_kwargs, meta_json(f, "step_kwargs"));
  }
  DUET_ASSIGN_OR_RETURN(std::string steps_s, f.meta("num_inference_steps"));
  FixtureConfig out;
  auto& sp = out.schedule;
  auto& p = out.sampler;
  const std::string& path = f.path();
  auto bad = [&](const std::string& what) {
    return unimplemented(path + ": unsupported configuration: " + what);
  };
  if (!c.is_object()) return data_loss(path + ": config is not a JSON object");
  if (!cfg<nlohmann::json>(c, "trained_betas", nullptr).is_null()) return bad("trained_betas");
  if (cfg<bool>(c, "rescale_betas_zero_snr", false)) return bad("rescale_betas_zero_snr");
  if (cfg<bool>(c, "thresholding", false)) return bad("thresholding");
  auto beta = parse_beta_schedule(cfg<std::string>(c, "beta_schedule", "linear"));
  if (!beta) return invalid_argument(path + ": " + beta.status().message());
  sp.beta = *beta;
  sp.num_train_timesteps = cfg<int>(c, "num_train_timesteps", 1000);
  sp.beta_start = cfg<double>(c, "beta_start", -1);
  sp.beta_end = cfg<double>(c, "beta_end", -1);
  auto pred = parse_prediction(cfg<std::string>(c, "prediction_type", "epsilon"));
  if (!pred) return invalid_argument(path + ": " + pred.status().message());
  sp.prediction = *pred;
  try {
    p.steps = std::stoi(steps_s);
  } catch (...) {
    return data_loss(path + ": num_inference_steps is not an integer");
  }
  p.spacing = cfg<std::string>(c, "timestep_spacing", "");
  p.steps_offset = cfg<int>(c, "steps_offset", 0);
  p.karras = cfg<bool>(c, "use_karras_sigmas", false);
  if (cfg<bool>(c, "use_exponential_sigmas", false) || cfg<bool>(c, "use_beta_sigmas", false) ||
      cfg<bool>(c, "use_flow_sigmas", false) || cfg<bool>(c, "use_lu_lambdas", false))
    return bad("exponential/beta/flow/lu sigmas");
  p.final_sigmas = cfg<std::string>(c, "final_sigmas_type", "");
  if (cfg<std::string>(c, "interpolation_type", "linear") != "linear")
    return bad("interpolation_type");
  if (c.contains("lambda_min_clipped") && c["lambda_min_clipped"].is_number())
    return bad("finite lambda_min_clipped");

  if (cls == "DDIMScheduler") {
    p.name = "ddim";
    if (cfg<bool>(c, "clip_sample", true)) return bad("clip_sample=True");
    p.set_alpha_to_one = cfg<bool>(c, "set_alpha_to_one", true) ? 1 : 0;
    p.eta = cfg<float>(step_kwargs, "eta", 0.0f);
  } else if (cls == "DDPMScheduler") {
    p.name = "ddpm";
    if (cfg<bool>(c, "clip_sample", true)) return bad("clip_sample=True");
    if (cfg<std::string>(c, "variance_type", "fixed_small") != "fixed_small")
      return bad("variance_type");
  } else if (cls == "EulerDiscreteScheduler") {
    p.name = "euler";
    if (cfg<double>(step_kwargs, "s_churn", 0.0) != 0.0) return bad("s_churn");
  } else if (cls == "EulerAncestralDiscreteScheduler") {
    p.name = "euler_a";
  } else if (cls == "HeunDiscreteScheduler") {
    p.name = "heun";
  } else if (cls == "KDPM2DiscreteScheduler") {
    p.name = "dpm2";
  } else if (cls == "LMSDiscreteScheduler") {
    p.name = "lms";
    p.lms_order = cfg<int>(step_kwargs, "order", 4);
  } else if (cls == "DPMSolverMultistepScheduler" || cls == "DPMSolverSinglestepScheduler") {
    const bool multi = cls == "DPMSolverMultistepScheduler";
    const std::string algo = cfg<std::string>(c, "algorithm_type", "dpmsolver++");
    const int order = cfg<int>(c, "solver_order", 2);
    if (cfg<std::string>(c, "solver_type", "midpoint") != "midpoint") return bad("solver_type");
    if (cfg<bool>(c, "euler_at_final", false)) return bad("euler_at_final");
    if (cfg<std::string>(c, "variance_type", "") != "") return bad("variance_type");
    if (multi && algo == "dpmsolver++" && order == 2)
      p.name = "dpmpp_2m";
    else if (multi && algo == "dpmsolver++" && order == 3)
      p.name = "dpmpp_3m";
    else if (multi && algo == "dpmsolver" && order == 2)
      p.name = "dpmsolver_2m";
    else if (multi && algo == "sde-dpmsolver++" && order == 2)
      p.name = "dpmpp_2m_sde";
    else if (!multi && algo == "dpmsolver++" && order == 2)
      p.name = "dpmpp_2s";
    else if (!multi && algo == "dpmsolver" && order == 3)
      p.name = "dpmsolver_3s";
    else
      return bad(cls + " algorithm_type=" + algo + " solver_order=" + std::to_string(order));
    p.lower_order_final = cfg<bool>(c, "lower_order_final", multi) ? 1 : 0;
  } else if (cls == "UniPCMultistepScheduler") {
    p.name = "unipc";
    if (cfg<int>(c, "solver_order", 2) != 2) return bad("unipc solver_order != 2");
    if (!cfg<bool>(c, "predict_x0", true)) return bad("unipc predict_x0=False");
    p.unipc_solver = cfg<std::string>(c, "solver_type", "bh2");
    p.lower_order_final = cfg<bool>(c, "lower_order_final", true) ? 1 : 0;
    if (c.contains("disable_corrector") && c["disable_corrector"].is_array() &&
        !c["disable_corrector"].empty())
      return bad("unipc disable_corrector");
  } else {
    return bad("scheduler class '" + cls + "'");
  }
  out.description = p.name + (p.karras ? " karras" : "") + " " + beta_schedule_name(sp.beta) +
                    (sp.prediction == Prediction::kVPrediction ? " v-pred" : "") + " " +
                    std::to_string(p.steps) + " steps";
  return out;
}

Result<FixtureCheck> check_sampler_fixture(const std::string& path) {
  DUET_ASSIGN_OR_RETURN(FixtureFile f, FixtureFile::load(path));
  DUET_ASSIGN_OR_RETURN(FixtureConfig fc, fixture_config(f));
  FixtureCheck r;
  r.file = path;
  r.case_id = f.has_meta("case_id") ? *f.meta("case_id") : path;
  r.description = fc.description;

  auto sched_r = NoiseSchedule::create(fc.schedule);
  if (!sched_r) return invalid_argument(path + ": " + sched_r.status().message());
  const NoiseSchedule& sched = *sched_r;
  DUET_ASSIGN_OR_RETURN(const F32Tensor* mu, f.tensor("mu"));
  DUET_ASSIGN_OR_RETURN(const F32Tensor* xT, f.tensor("x_T"));
  DUET_ASSIGN_OR_RETURN(const F32Tensor* ts_ref, f.tensor("timesteps"));
  DUET_ASSIGN_OR_RETURN(const F32Tensor* final_ref, f.tensor("final"));
  const size_t n = xT->numel();
  if (n == 0 || mu->numel() != n || final_ref->numel() != n)
    return data_loss(path + ": mu / x_T / final sizes disagree");
  double s = 0.5;
  if (f.has_meta("s")) {
    try {
      s = std::stod(*f.meta("s"));
    } catch (...) {
      return data_loss(path + ": metadata 's' is not a number");
    }
  }
  double sens = 0;
  if (f.has_meta("rounding_sensitivity_max_abs")) {
    try {
      sens = std::stod(*f.meta("rounding_sensitivity_max_abs"));
    } catch (...) {
      return data_loss(path + ": rounding_sensitivity_max_abs is not a number");
    }
  }
  r.e2e_tol = std::max(1e-5, 10 * sens);

  auto sampler_r = make_sampler(fc.sampler, sched, n);
  if (!sampler_r) return invalid_argument(path + ": " + sampler_r.status().message());
  Sampler& smp = **sampler_r;
  const int calls = smp.num_calls();
  r.num_calls = calls;
  if (static_cast<int>(ts_ref->numel()) != calls)
    return data_loss(path + ": fixture has " + std::to_string(ts_ref->numel()) +
                     " timesteps, duet's " + fc.description + " makes " + std::to_string(calls) +
                     " model calls");
  // Per-call tensors.
  std::vector<const F32Tensor*> outs(calls), samples(calls), inputs(calls);
  for (int k = 0; k < calls; ++k) {
    char idx[16];
    std::snprintf(idx, sizeof idx, "%03d", k);
    DUET_ASSIGN_OR_RETURN(outs[k], f.tensor(std::string("model_outputs_") + idx));
    DUET_ASSIGN_OR_RETURN(samples[k], f.tensor(std::string("samples_") + idx));
    DUET_ASSIGN_OR_RETURN(inputs[k], f.tensor(std::string("model_inputs_") + idx));
    if (outs[k]->numel() != n || samples[k]->numel() != n || inputs[k]->numel() != n)
      return data_loss(path + ": call " + idx + " tensors have the wrong size");
  }
  std::vector<std::vector<float>> draws;
  std::vector<int> draw_steps;
  for (int k = 0;; ++k) {
    char name[32];
    std::snprintf(name, sizeof name, "noise_%03d", k);
    if (!f.has_tensor(name)) break;
    draws.push_back((*f.tensor(name))->data);
    if (draws.back().size() != n) return data_loss(path + ": " + name + " has the wrong size");
  }
  if (!draws.empty()) {
    DUET_ASSIGN_OR_RETURN(const F32Tensor* nsi, f.tensor("noise_step_index"));
    if (nsi->numel() != draws.size())
      return data_loss(path + ": noise_step_index length does not match the noise tensors");
    for (float v : nsi->data) draw_steps.push_back(static_cast<int>(v));
  }

  // Structural checks: timesteps, sigmas, init_noise_sigma, order list.
  double ts_err = 0;
  for (int k = 0; k < calls; ++k)
    ts_err = std::max(ts_err, std::fabs(static_cast<double>(smp.timesteps()[k]) - ts_ref->data[k]));
  if (ts_err > 1e-3) r.problems.push_back("timesteps differ by up to " + fmt("%.3g", ts_err));
  if (f.has_tensor("sigmas") && fc.sampler.name != "dpm2") {
    const F32Tensor* sr = *f.tensor("sigmas");
    if (sr->numel() != smp.sigmas().size()) {
      r.problems.push_back("sigmas length " + std::to_string(smp.sigmas().size()) + " vs " +
                           std::to_string(sr->numel()));
    } else {
      double e = 0;
      for (size_t k = 0; k < sr->numel(); ++k)
        e = std::max(e,
                     std::fabs(smp.sigmas()[k] - sr->data[k]) / (1e-12 + std::fabs(sr->data[k])));
      if (e > 1e-6) r.problems.push_back("sigmas differ (max rel " + fmt("%.3g", e) + ")");
    }
  }
  float init_sigma = smp.init_noise_sigma();
  if (f.has_meta("init_noise_sigma")) {
    const double ref = std::stod(*f.meta("init_noise_sigma"));
    if (std::fabs(ref - init_sigma) > 1e-6 * (1 + std::fabs(ref)))
      r.problems.push_back("init_noise_sigma " + fmt("%.9g", init_sigma) + " vs " +
                           fmt("%.9g", ref));
  }

  AnalyticGaussianModel model(sched, mu->data, s);
  if (f.has_tensor("model_call_alphabar")) {
    const F32Tensor* ab = *f.tensor("model_call_alphabar");
    for (int k = 0; k < calls && k < static_cast<int>(ab->numel()); ++k)
      r.alphabar_max_rel =
          std::max(r.alphabar_max_rel, std::fabs(model.alphabar(smp.timesteps()[k]) - ab->data[k]) /
                                           std::fabs(ab->data[k]));
  }

  std::vector<float> x0(n), x(n), xe(n), mo(n), in(n);
  for (size_t i = 0; i < n; ++i) x0[i] = xT->data[i] * init_sigma;
  r.calls.resize(calls);

  // Step-wise: each step fed the fixture's previous sample and model output.
  {
    FixtureNoise noise(&draws, &draw_steps);
    smp.begin(0);
    for (int k = 0; k < calls; ++k) {
      const std::vector<float>& prev = k == 0 ? x0 : samples[k - 1]->data;
      x = prev;
      // scale_model_input check (folded into the step-wise error)
      const float d = smp.input_divisor(k);
      double in_rel = 0;
      for (size_t i = 0; i < n; ++i) {
        const double ref = inputs[k]->data[i];
        in_rel = std::max(in_rel, std::fabs(x[i] / d - ref) / (1 + std::fabs(ref)));
      }
      noise.current_step = k;
      Status st = smp.step(k, outs[k]->data.data(), x.data(), noise);
      if (!st)
        return internal_error(path + ": step-wise replay failed at call " + std::to_string(k) +
                              ": " + st.message());
      CallError& ce = r.calls[k];
      ce.t = smp.timesteps()[k];
      ce.step_rel = in_rel;
      for (size_t i = 0; i < n; ++i) {
        const double ref = samples[k]->data[i];
        const double e = std::fabs(static_cast<double>(x[i]) - ref);
        ce.step_abs = std::max(ce.step_abs, e);
        ce.step_rel = std::max(ce.step_rel, e / (1 + std::fabs(ref)));
      }
      r.step_max_abs = std::max(r.step_max_abs, ce.step_abs);
      r.step_max_rel = std::max(r.step_max_rel, ce.step_rel);
    }
    if (!noise.error.empty()) r.problems.push_back(noise.error);
    if (noise.used != draws.size())
      r.problems.push_back("sampler drew " + std::to_string(noise.used) +
                           " noise tensors, fixture has " + std::to_string(draws.size()));
  }
  r.step_pass = r.step_max_rel <= r.step_tol_rel;

  // End-to-end: analytic model + replayed noise through the sampler's own loop.
  {
    FixtureNoise noise(&draws, &draw_steps);
    xe = x0;
    smp.begin(0);
    for (int k = 0; k < calls; ++k) {
      const float d = smp.input_divisor(k);
      for (size_t i = 0; i < n; ++i) in[i] = xe[i] / d;
      DUET_RETURN_IF_ERROR(model(in.data(), smp.timesteps()[k], mo.data()));
      noise.current_step = k;
      Status st = smp.step(k, mo.data(), xe.data(), noise);
      if (!st)
        return internal_error(path + ": end-to-end replay failed at call " + std::to_string(k) +
                              ": " + st.message());
      double e = 0;
      for (size_t i = 0; i < n; ++i)
        e = std::max(e, std::fabs(static_cast<double>(xe[i]) - samples[k]->data[i]));
      r.calls[k].e2e_abs = e;
    }
    for (size_t i = 0; i < n; ++i)
      r.e2e_max_abs =
          std::max(r.e2e_max_abs, std::fabs(static_cast<double>(xe[i]) - final_ref->data[i]));
  }
  r.e2e_pass = r.e2e_max_abs <= r.e2e_tol;
  return r;
}

}  // namespace duet::diffusion
