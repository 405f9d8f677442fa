// SLAB linear attention of the cpu backend (Highway, runtime dispatch; OpenMP). Twin:
// ops::slab_attention (double accumulation), compared in test_ops.cpp and duet_backend_ops.
//   stage 1, one task per (image, head): kv [d, d] += phi(k_n)^T v_n and z [d] += phi(k_n) as
//            row AXPYs (a zero phi(k_n, e) — half the keys after ReLU — skips its row), then 1/N;
//   stage 2, one task per token row: out = (sum_e phi(q_e) kv[e, :]) / (phi(q) . z + eps), then
//            + dwc_b + sum over taps of w_tap * v[neighbour] with the taps repacked [k*k, d].
// fp32 throughout (the normaliser too); everything lives in the caller's scratch.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/slab_attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; the includes below follow it.
#include <hwy/highway.h>
#include <algorithm>

#include "backends/cpu/cpu_kernels.h"

HWY_BEFORE_NAMESPACE();
namespace duet::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// y[0..n) += s * x[0..n)
HWY_INLINE void Axpy(float s, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const auto vs = hn::Set(df, s);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    hn::StoreU(hn::MulAdd(vs, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  for (; i < n; ++i) y[i] += s * x[i];
}

// y[0..n) += w[0..n) * x[0..n)
HWY_INLINE void MulAcc(const float* HWY_RESTRICT w, const float* HWY_RESTRICT x,
                       float* HWY_RESTRICT y, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes)
    hn::StoreU(hn::MulAdd(hn::LoadU(df, w + i), hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df,
               y + i);
  for (; i < n; ++i) y[i] += w[i] * x[i];
}

void SlabAttention(const ops::SlabAttentionArgs& a) {
  const int64_t d = a.head_dim, N = a.gh * a.gw, BH = a.batch * a.heads, kk = a.kernel * a.kernel;
  const int64_t r = a.kernel / 2, per = d * d + d;
  float* kvz = a.scratch;              // [BH, d*d + d]: kv then z
  float* taps = a.scratch + BH * per;  // [k*k, d]
  for (int64_t t = 0; t < kk; ++t)
    for (int64_t f = 0; f < d; ++f) taps[t * d + f] = a.dwc_w[f * kk + t];
  const float inv_n = 1.f / static_cast<float>(N);
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const int64_t b = bh / a.heads, col = (bh % a.heads) * d;
    float* kv = kvz + bh * per;  // [d, d]
    float* z = kv + d * d;       // [d]
    std::fill(kv, kv + per, 0.f);
    for (int64_t n = 0; n < N; ++n) {
      const float* k = a.k + (b * N + n) * a.ldk + col;
      const float* v = a.v + (b * N + n) * a.ldv + col;
      for (int64_t e = 0; e < d; ++e) {
        const float ke = std::max(k[e], 0.f);
        if (ke == 0.f) continue;
        z[e] += ke;
        Axpy(ke, v, kv + e * d, d);
      }
    }
    for (int64_t e = 0; e < per; ++e) kv[e] *= inv_n;
  }
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < a.batch * N; ++row) {
    const int64_t b = row / N, n = row % N, i = n / a.gw, j = n % a.gw;
    for (int64_t h = 0; h < a.heads; ++h) {
      const int64_t col = h * d;
      const float* kv = kvz + (b * a.heads + h) * per;
      const float* z = kv + d * d;
      const float* q = a.q + row * a.ldq + col;
      float* out = a.out + row * a.ldo + col;
      std::fill(out, out + d, 0.f);
      float den = 0.f;
      for (int64_t e = 0; e < d; ++e) {
        const float qe = std::max(q[e], 0.f);
        if (qe == 0.f) continue;
        den += qe * z[e];
        Axpy(qe, kv + e * d, out, d);
      }
      const float inv = 1.f / (den + a.eps);
      for (int64_t f = 0; f < d; ++f) out[f] = out[f] * inv + a.dwc_b[f];
      for (int64_t di = -r; di <= r; ++di) {
        const int64_t ii = i + di;
        if (ii < 0 || ii >= a.gh) continue;
        for (int64_t dj = -r; dj <= r; ++dj) {
          const int64_t jj = j + dj;
          if (jj < 0 || jj >= a.gw) continue;
          const float* v = a.v + (b * N + ii * a.gw + jj) * a.ldv + col;
          MulAcc(taps + ((di + r) * a.kernel + dj + r) * d, v, out, d);
        }
      }
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace duet::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace duet::cpu {

HWY_EXPORT(SlabAttention);

void slab_attention(const ops::SlabAttentionArgs& a) { HWY_DYNAMIC_DISPATCH(SlabAttention)(a); }

}  // namespace duet::cpu
#endif  // HWY_ONCE
