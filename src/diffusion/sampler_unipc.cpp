// UniPC (diffusers UniPCMultistepScheduler, predict_x0=True, solver_order=2, bh2 by default):
// a multistep predictor (UniP) followed, at the start of the next step, by a corrector (UniC)
// that reuses the new model evaluation. VP latents.
#include <algorithm>
#include <cmath>

#include "diffusion/sampler_internal.h"

namespace duet::diffusion::detail {
namespace {

// Solves the small dense system A x = b (n <= 3) like LAPACK sgesv: partial pivoting, float32.
void solve_small(int n, float A[3][3], float b[3], float x[3]) {
  int perm[3] = {0, 1, 2};
  for (int c = 0; c < n; ++c) {
    int p = c;
    for (int r = c + 1; r < n; ++r)
      if (std::fabs(A[r][c]) > std::fabs(A[p][c])) p = r;
    if (p != c) {
      std::swap(A[p], A[c]);
      std::swap(perm[p], perm[c]);
      std::swap(b[p], b[c]);
    }
    const float inv = 1.0f / A[c][c];
    for (int r = c + 1; r < n; ++r) {
      A[r][c] = A[r][c] * inv;
      for (int k = c + 1; k < n; ++k) A[r][k] = A[r][k] - A[r][c] * A[c][k];
    }
  }
  for (int r = 0; r < n; ++r)
    for (int k = 0; k < r; ++k) b[r] = b[r] - A[r][k] * b[k];
  for (int r = n - 1; r >= 0; --r) {
    float v = b[r];
    for (int k = r + 1; k < n; ++k) v = v - A[r][k] * x[k];
    x[r] = v / A[r][r];
  }
}

class UniPcSampler final : public Sampler {
 public:
  UniPcSampler(const SamplerParams& p, const NoiseSchedule& s, size_t n)
      : Sampler(p, s, n), last_sample_(n), conv_(n) {
    solver_order_ = 2;
    bh2_ = p.unipc_solver != "bh1";
    lower_order_final_ = p.lower_order_final != 0;
    const int T = s.num_train_timesteps();
    const std::string spacing = p.spacing.empty() ? "linspace" : p.spacing;
    std::vector<double> sig;
    if (p.karras) {
      sig = karras_from_table(s, p.steps);
      for (double v : sig) timesteps_.push_back(static_cast<float>(np_round(s.sigma_to_t(v))));
    } else {
      for (int64_t t : dpm_timesteps(spacing, T, p.steps, p.steps_offset)) {
        timesteps_.push_back(static_cast<float>(t));
        sig.push_back(s.t_to_sigma_interp(static_cast<double>(t)));
      }
    }
    for (double v : sig) sigmas_.push_back(static_cast<float>(v));
    if (p.final_sigmas == "sigma_min") {
      if (p.karras) {
        sigmas_.push_back(sigmas_.back());
      } else {
        const float ac0 = s.alphas_cumprod()[0];
        sigmas_.push_back(std::sqrt((1.0f - ac0) / ac0));
      }
    } else {
      sigmas_.push_back(0.0f);
    }
    hist_.assign(solver_order_, std::vector<float>(n));
  }
  Status add_noise(const float* x0, const float* noise, int call, float* out) const override {
    if (call < 0 || call >= num_calls()) return invalid_argument("add_noise: call out of range");
    const AlphaSigma a = alpha_sigma(sigmas_[call]);
    for (size_t i = 0; i < n_; ++i) out[i] = a.alpha * x0[i] + a.sigma * noise[i];
    return Status::ok();
  }

 protected:
  void reset_state(int) override {
    filled_ = 0;
    lower_order_nums_ = 0;
    have_last_ = false;
    this_order_ = 1;
  }

  Status do_step(int i, const float* m, float* x, NoiseSource&) override {
    const int N = num_calls();
    // convert_model_output (x0 prediction) from the uncorrected sample
    const AlphaSigma a = alpha_sigma(sigmas_[i]);
    if (sched_.prediction() == Prediction::kVPrediction)
      for (size_t k = 0; k < n_; ++k) conv_[k] = a.alpha * x[k] - a.sigma * m[k];
    else
      for (size_t k = 0; k < n_; ++k) conv_[k] = (x[k] - a.sigma * m[k]) / a.alpha;
    if (i > 0 && have_last_) corrector(i, x);
    // push history
    head_ = (head_ + 1) % solver_order_;
    filled_ = std::min(filled_ + 1, solver_order_);
    std::copy(conv_.begin(), conv_.end(), hist_[head_].begin());
    int order = lower_order_final_ ? std::min(solver_order_, N - i) : solver_order_;
    this_order_ = std::min(order, lower_order_nums_ + 1);
    std::copy(x, x + n_, last_sample_.begin());
    have_last_ = true;
    predictor(i, x);
    if (lower_order_nums_ < solver_order_) ++lower_order_nums_;
    return Status::ok();
  }

 private:
  const float* hist(int k) const {
    return hist_[(head_ - k + solver_order_) % solver_order_].data();
  }

  // Shared coefficient computation: returns h_phi_1, B_h and fills b[0..order).
  void coeffs(float h, int order, float* h_phi_1, float* B_h, float b[3]) const {
    const float hh = -h;
    *h_phi_1 = std::expm1(hh);
    float h_phi_k = *h_phi_1 / hh - 1.0f;
    float fact = 1.0f;
    *B_h = bh2_ ? std::expm1(hh) : hh;
    for (int k = 1; k <= order; ++k) {
      b[k - 1] = h_phi_k * fact / *B_h;
      fact *= static_cast<float>(k + 1);
      h_phi_k = h_phi_k / hh - static_cast<float>(1.0 / fact);
    }
  }

  void predictor(int i, float* x) {
    const int order = this_order_;
    const AlphaSigma at = alpha_sigma(sigmas_[i + 1]), a0 = alpha_sigma(sigmas_[i]);
    const float lt = lambda_of(at), l0 = lambda_of(a0);
    const float h = lt - l0;
    const float* m0 = hist(0);
    float h_phi_1, B_h, b[3];
    coeffs(h, order, &h_phi_1, &B_h, b);
    const float c1 = at.sigma / a0.sigma, c2 = at.alpha * h_phi_1, c3 = at.alpha * B_h;
    if (order >= 2) {
      // order 2: rhos_p = 0.5 (diffusers' simplified version); D1 = (m1 - m0) / rk
      const AlphaSigma a1 = alpha_sigma(sigmas_[i - 1]);
      const float rk = (lambda_of(a1) - l0) / h;
      const float* m1 = hist(1);
      for (size_t k = 0; k < n_; ++k) {
        const float d1 = (m1[k] - m0[k]) / rk;
        const float pred_res = 0.5f * d1;
        x[k] = (c1 * x[k] - c2 * m0[k]) - c3 * pred_res;
      }
    } else {
      for (size_t k = 0; k < n_; ++k) x[k] = c1 * x[k] - c2 * m0[k];
    }
  }

  // Corrects x (the sample produced by the previous predictor) using the new model output.
  void corrector(int i, float* x) {
    const int order = this_order_;
    const AlphaSigma at = alpha_sigma(sigmas_[i]), a0 = alpha_sigma(sigmas_[i - 1]);
    const float lt = lambda_of(at), l0 = lambda_of(a0);
    const float h = lt - l0;
    const float* m0 = hist(0);  // previous step's converted output
    float h_phi_1, B_h, b[3];
    coeffs(h, order, &h_phi_1, &B_h, b);
    const float c1 = at.sigma / a0.sigma, c2 = at.alpha * h_phi_1, c3 = at.alpha * B_h;
    const float* xl = last_sample_.data();
    if (order == 1) {
      const float rho = 0.5f;
      for (size_t k = 0; k < n_; ++k) {
        const float d1t = conv_[k] - m0[k];
        x[k] = (c1 * xl[k] - c2 * m0[k]) - c3 * (rho * d1t);
      }
      return;
    }
    // order 2: rks = [rk, 1]; R = [[1, 1], [rk, 1]]; rhos_c = solve(R, b)
    const AlphaSigma a1 = alpha_sigma(sigmas_[i - 2]);
    const float rk = (lambda_of(a1) - l0) / h;
    float R[3][3] = {{1.0f, 1.0f, 0}, {rk, 1.0f, 0}, {0, 0, 0}};
    float rhs[3] = {b[0], b[1], 0}, rho[3] = {0, 0, 0};
    solve_small(2, R, rhs, rho);
    const float* m1 = hist(1);
    for (size_t k = 0; k < n_; ++k) {
      const float d1 = (m1[k] - m0[k]) / rk;
      const float corr = rho[0] * d1;
      const float d1t = conv_[k] - m0[k];
      x[k] = (c1 * xl[k] - c2 * m0[k]) - c3 * (corr + rho[1] * d1t);
    }
  }

  int solver_order_ = 2;
  bool bh2_ = true, lower_order_final_ = true;
  std::vector<std::vector<float>> hist_;
  std::vector<float> last_sample_, conv_;
  int head_ = 0, filled_ = 0, lower_order_nums_ = 0, this_order_ = 1;
  bool have_last_ = false;
};

}  // namespace

Result<std::unique_ptr<Sampler>> make_unipc(const SamplerParams& p, const NoiseSchedule& s,
                                            size_t n) {
  if (p.unipc_solver != "bh1" && p.unipc_solver != "bh2")
    return invalid_argument("unipc: solver must be bh1 or bh2");
  return std::unique_ptr<Sampler>(new UniPcSampler(p, s, n));
}

}  // namespace duet::diffusion::detail
