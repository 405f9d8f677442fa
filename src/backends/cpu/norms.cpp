// Fused normalisation kernels of the cpu backend — LayerNorm, LayerNorm + adaLN modulate,
// GroupNorm (+ SiLU) — in Highway SIMD with runtime dispatch. Statistics are accumulated in
// double (one pass for the mean, one for the variance, as torch's two-pass result; floats are
// promoted lane-wise), the normalisation itself in float. OpenMP over rows / (batch, group).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/norms.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; the includes below follow it.
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>
#include <cmath>

#include "backends/cpu/cpu_kernels.h"

HWY_BEFORE_NAMESPACE();
namespace duet::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;

// Σ x (or Σ (x − mu)² when centred) in double.
template <bool kCentred>
HWY_INLINE double sum_double(const float* x, int64_t n, double mu) {
  const hn::ScalableTag<double> dd;
  const hn::Rebind<float, decltype(dd)> dh;  // as many float lanes as double lanes
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(dd));
  auto acc0 = hn::Zero(dd), acc1 = hn::Zero(dd);
  const auto m = hn::Set(dd, mu);
  int64_t i = 0;
  for (; i + 2 * lanes <= n; i += 2 * lanes) {
    auto lo = hn::PromoteTo(dd, hn::LoadU(dh, x + i));
    auto hi = hn::PromoteTo(dd, hn::LoadU(dh, x + i + lanes));
    if constexpr (kCentred) {
      lo = hn::Sub(lo, m);
      hi = hn::Sub(hi, m);
      acc0 = hn::MulAdd(lo, lo, acc0);
      acc1 = hn::MulAdd(hi, hi, acc1);
    } else {
      acc0 = hn::Add(acc0, lo);
      acc1 = hn::Add(acc1, hi);
    }
  }
  double s = hn::GetLane(hn::SumOfLanes(dd, hn::Add(acc0, acc1)));
  for (; i < n; ++i) s += kCentred ? (x[i] - mu) * (x[i] - mu) : static_cast<double>(x[i]);
  return s;
}

HWY_INLINE void stats(const float* x, int64_t n, float eps, float* mean, float* rstd) {
  const double mu = sum_double<false>(x, n, 0.0) / static_cast<double>(n);
  const double v = sum_double<true>(x, n, mu);
  *mean = static_cast<float>(mu);
  *rstd = static_cast<float>(1.0 / std::sqrt(v / static_cast<double>(n) + eps));
}

// y = (x − mu)·rstd·g + b over n floats; g / b may be null (plain), mod: y·(1 + g) + b instead.
enum class Affine { kNone, kGammaBeta, kModulate };
template <Affine kMode>
HWY_INLINE void normalise_row(const float* x, int64_t n, float mu, float rstd, const float* g,
                              const float* b, float* y) {
  const DF d;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  const auto vmu = hn::Set(d, mu), vr = hn::Set(d, rstd), one = hn::Set(d, 1.f);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    auto v = hn::Mul(hn::Sub(hn::LoadU(d, x + i), vmu), vr);
    if constexpr (kMode == Affine::kGammaBeta)
      v = hn::MulAdd(v, hn::LoadU(d, g + i), hn::LoadU(d, b + i));
    if constexpr (kMode == Affine::kModulate)
      v = hn::MulAdd(v, hn::Add(one, hn::LoadU(d, g + i)), hn::LoadU(d, b + i));
    hn::StoreU(v, d, y + i);
  }
  for (; i < n; ++i) {
    const float v = (x[i] - mu) * rstd;
    if constexpr (kMode == Affine::kNone) y[i] = v;
    if constexpr (kMode == Affine::kGammaBeta) y[i] = v * g[i] + b[i];
    if constexpr (kMode == Affine::kModulate) y[i] = v * (1.0f + g[i]) + b[i];
  }
}

void LayerNorm(const float* x, int64_t m, int64_t dim, const float* gamma, const float* beta,
               float eps, float* y) {
#pragma omp parallel for schedule(static) if (m * dim > 32768)
  for (int64_t i = 0; i < m; ++i) {
    const float* xr = x + i * dim;  // [D]
    float mu, rstd;
    stats(xr, dim, eps, &mu, &rstd);
    if (gamma)
      normalise_row<Affine::kGammaBeta>(xr, dim, mu, rstd, gamma, beta, y + i * dim);
    else
      normalise_row<Affine::kNone>(xr, dim, mu, rstd, nullptr, nullptr, y + i * dim);
  }
}

void LayerNormModulate(const float* x, int64_t b, int64_t n, int64_t dim, float eps,
                       const float* shift, const float* scale, int64_t mod_stride, float* y) {
#pragma omp parallel for schedule(static) if (b * n * dim > 32768)
  for (int64_t r = 0; r < b * n; ++r) {
    const int64_t bi = r / n;
    const float* xr = x + r * dim;
    float mu, rstd;
    stats(xr, dim, eps, &mu, &rstd);
    normalise_row<Affine::kModulate>(xr, dim, mu, rstd, scale + bi * mod_stride,
                                     shift + bi * mod_stride, y + r * dim);
  }
}

void GroupNorm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups, const float* gamma,
               const float* beta, float eps, bool apply_silu, float* y) {
  const int64_t cg = c / groups;
#pragma omp parallel for schedule(static) if (b * c * hw > 32768)
  for (int64_t task = 0; task < b * groups; ++task) {
    const DF d;
    const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
    const int64_t bi = task / groups, g = task % groups;
    const int64_t base = (bi * c + g * cg) * hw;
    float mu, rstd;
    stats(x + base, cg * hw, eps, &mu, &rstd);
    for (int64_t ci = 0; ci < cg; ++ci) {
      const int64_t ch = g * cg + ci;
      const float a = rstd * gamma[ch], bb = beta[ch] - mu * a;
      const float* xr = x + base + ci * hw;
      float* yr = y + base + ci * hw;
      const auto va = hn::Set(d, a), vb = hn::Set(d, bb), one = hn::Set(d, 1.f);
      int64_t p = 0;
      for (; p + lanes <= hw; p += lanes) {
        auto v = hn::MulAdd(hn::LoadU(d, xr + p), va, vb);
        if (apply_silu) v = hn::Div(v, hn::Add(one, hn::Exp(d, hn::Neg(v))));
        hn::StoreU(v, d, yr + p);
      }
      for (; p < hw; ++p) {
        const float v = xr[p] * a + bb;
        yr[p] = apply_silu ? v / (1.0f + std::exp(-v)) : v;
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace duet::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace duet::cpu {

HWY_EXPORT(LayerNorm);
HWY_EXPORT(LayerNormModulate);
HWY_EXPORT(GroupNorm);

void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                float eps, float* y) {
  HWY_DYNAMIC_DISPATCH(LayerNorm)(x, m, d, gamma, beta, eps, y);
}
void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                         const float* shift, const float* scale, int64_t mod_stride, float* y) {
  HWY_DYNAMIC_DISPATCH(LayerNormModulate)(x, b, n, d, eps, shift, scale, mod_stride, y);
}
void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                const float* gamma, const float* beta, float eps, bool silu, float* y) {
  HWY_DYNAMIC_DISPATCH(GroupNorm)(x, b, c, hw, groups, gamma, beta, eps, silu, y);
}

}  // namespace duet::cpu
#endif  // HWY_ONCE
