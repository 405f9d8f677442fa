// Fused normalisation kernels: LayerNorm, LayerNorm + adaLN modulate, GroupNorm + SiLU.
// Statistics are accumulated in double (one pass for the mean, one for the variance, as torch's
// two-pass result), the normalisation itself in float.
#include <cmath>

#include "backends/cpu/cpu_kernels.h"

namespace duet::cpu {

namespace {

inline void stats(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += x[j];
  const double mu = s / static_cast<double>(n);
  double v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t j = 0; j < n; ++j) v += (x[j] - mu) * (x[j] - mu);
  *mean = static_cast<float>(mu);
  *rstd = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(n) + eps));
}

inline float silu(float v) { return v / (1.0f + std::exp(-v)); }

}  // namespace

void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                float eps, float* y) {
#pragma omp parallel for schedule(static) if (m * d > 8192)
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * d;  // [D]
    float* yr = y + i * d;
    float mu, rstd;
    stats(xr, d, eps, &mu, &rstd);
    if (gamma) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mu) * rstd * gamma[j] + beta[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] = (xr[j] - mu) * rstd;
    }
  }
}

void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                         const float* shift, const float* scale, int64_t mod_stride, float* y) {
#pragma omp parallel for schedule(static) if (b * n * d > 8192)
  for (int64_t r = 0; r < b * n; ++r) {
    const int64_t bi = r / n;
    const float* sh = shift + bi * mod_stride;  // [D]
    const float* sc = scale + bi * mod_stride;  // [D]
    const float* xr = x + r * d;
    float* yr = y + r * d;
    float mu, rstd;
    stats(xr, d, eps, &mu, &rstd);
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) yr[j] = ((xr[j] - mu) * rstd) * (1.0f + sc[j]) + sh[j];
  }
}

void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                const float* gamma, const float* beta, float eps, bool apply_silu, float* y) {
  const int64_t cg = c / groups;
#pragma omp parallel for schedule(static) if (b * c * hw > 8192)
  for (int64_t task = 0; task < b * groups; ++task) {
    const int64_t bi = task / groups, g = task % groups;
    const int64_t base = (bi * c + g * cg) * hw;
    float mu, rstd;
    stats(x + base, cg * hw, eps, &mu, &rstd);
    for (int64_t ci = 0; ci < cg; ++ci) {
      const int64_t ch = g * cg + ci;
      const float a = rstd * gamma[ch], bb = beta[ch] - mu * a;
      const float* xr = x + base + ci * hw;
      float* yr = y + base + ci * hw;
      if (apply_silu) {
        for (int64_t p = 0; p < hw; ++p) yr[p] = silu(xr[p] * a + bb);
      } else {
#pragma omp simd
        for (int64_t p = 0; p < hw; ++p) yr[p] = xr[p] * a + bb;
      }
    }
  }
}

}  // namespace duet::cpu
