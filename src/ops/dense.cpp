// Reference dense ops: linear, LayerNorm (+ adaLN modulate), GroupNorm, activations, softmax.
#include <cmath>

#include "ops/ops.h"

namespace duet::ops {

void linear(const float* x, const float* w, const float* b, int64_t m, int64_t k, int64_t n,
            float* y) {
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * k;  // [K]
    for (int64_t o = 0; o < n; ++o) {
      const float* wo = w + o * k;  // [K]
      double acc = b ? b[o] : 0.0;
      for (int64_t j = 0; j < k; ++j) acc += static_cast<double>(xi[j]) * wo[j];
      y[i * n + o] = static_cast<float>(acc);
    }
  }
}

namespace {
// mean and 1/sqrt(var + eps) of one row, in double (biased variance, as torch).
void row_stats(const float* x, int64_t d, float eps, double* mean, double* rstd) {
  double s = 0;
  for (int64_t j = 0; j < d; ++j) s += x[j];
  const double mu = s / static_cast<double>(d);
  double v = 0;
  for (int64_t j = 0; j < d; ++j) v += (x[j] - mu) * (x[j] - mu);
  v /= static_cast<double>(d);
  *mean = mu;
  *rstd = 1.0 / std::sqrt(v + static_cast<double>(eps));
}
}  // namespace

void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                float eps, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    double mu, rstd;
    row_stats(x + i * d, d, eps, &mu, &rstd);
    for (int64_t j = 0; j < d; ++j) {
      double v = (x[i * d + j] - mu) * rstd;
      if (gamma) v *= gamma[j];
      if (beta) v += beta[j];
      y[i * d + j] = static_cast<float>(v);
    }
  }
}

void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                         const float* shift, const float* scale, int64_t mod_stride, float* y) {
  for (int64_t bi = 0; bi < b; ++bi) {
    const float* sh = shift + bi * mod_stride;  // [D]
    const float* sc = scale + bi * mod_stride;  // [D]
    for (int64_t t = 0; t < n; ++t) {
      const int64_t row = (bi * n + t) * d;
      double mu, rstd;
      row_stats(x + row, d, eps, &mu, &rstd);
      for (int64_t j = 0; j < d; ++j) {
        const float ln = static_cast<float>((x[row + j] - mu) * rstd);
        y[row + j] = ln * (1.0f + sc[j]) + sh[j];
      }
    }
  }
}

void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                const float* gamma, const float* beta, float eps, bool apply_silu, float* y) {
  const int64_t cg = c / groups;
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t base = (bi * c + g * cg) * hw;
      double mu, rstd;
      row_stats(x + base, cg * hw, eps, &mu, &rstd);
      for (int64_t ci = 0; ci < cg; ++ci) {
        const int64_t ch = g * cg + ci;
        for (int64_t p = 0; p < hw; ++p) {
          const int64_t idx = base + ci * hw + p;
          float v = static_cast<float>((x[idx] - mu) * rstd * gamma[ch] + beta[ch]);
          y[idx] = apply_silu ? silu1(v) : v;
        }
      }
    }
  }
}

float sigmoid1(float x) {
  return static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(x))));
}
float silu1(float x) { return x * sigmoid1(x); }
float gelu_tanh1(float x) {
  const double xd = x;
  const double k = std::sqrt(2.0 / M_PI);
  return static_cast<float>(0.5 * xd * (1.0 + std::tanh(k * (xd + 0.044715 * xd * xd * xd))));
}

void silu(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = silu1(x[i]);
}
void gelu_tanh(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = gelu_tanh1(x[i]);
}
void sigmoid(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = sigmoid1(x[i]);
}

void softmax_rows(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* v = x + r * n;
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) mx = v[j] > mx ? v[j] : mx;
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(v[j]) - mx);
    for (int64_t j = 0; j < n; ++j)
      v[j] = static_cast<float>(std::exp(static_cast<double>(v[j]) - mx) / s);
  }
}

}  // namespace duet::ops
