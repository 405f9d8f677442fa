// CARAFE on the cpu backend, in Highway SIMD with runtime dispatch, every loop contiguous.
//
// Stage 1 — weights: for each (batch, sub-pixel σ = (py, px)) the encoder planes
// enc[b, q·s² + σ] [H, W] (q < k²) are softmaxed over q, vectorised over the H·W positions, into
// wts [B, k², s², H·W]. A weight whose source pixel (Y + i − r, X + j − r) lies outside the image
// (q = i·k + j, r = k/2) is then set to 0, so stage 2 needs no bounds checks.
// Stage 2 — reassembly, per (batch, channel): the plane x[b, c] is copied into a zero-padded flat
// buffer (r·W + r zeros each side); for each σ, acc[p] = Σ_q wts[b, q, σ, p] · xpad[p + (i−r)·W +
// (j−r)] — a read that wraps into the neighbouring row has weight 0 — accumulated in registers
// over q, then stored to y[b, c, s·Y + py, s·X + px].
// Scratch (carafe_scratch_floats): wts, then one padded plane per (b, c).
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/carafe.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; the includes below follow it.
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/cpu_kernels.h"

HWY_BEFORE_NAMESPACE();
namespace duet::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// wts[b, :, σ, :] = masked softmax over q of enc[b, q·s² + σ] (see the file comment).
void carafe_weights(const float* enc, int64_t bi, int64_t sub, int64_t h, int64_t w, int64_t k,
                    int64_t s, float* wts) {
  const hn::ScalableTag<float> d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const int64_t kk = k * k, ss = s * s, hw = h * w, r = k / 2;
  const float* e = enc + (bi * kk * ss + sub) * hw;  // plane q at e + q·s²·H·W
  float* o = wts + (bi * kk * ss + sub) * hw;        // plane q at o + q·s²·H·W
  const int64_t step = ss * hw;
  int64_t p = 0;
  for (; p + n <= hw; p += n) {
    auto mx = hn::LoadU(d, e + p);
    for (int64_t q = 1; q < kk; ++q) mx = hn::Max(mx, hn::LoadU(d, e + q * step + p));
    auto sum = hn::Zero(d);
    for (int64_t q = 0; q < kk; ++q) {
      const auto v = hn::Exp(d, hn::Sub(hn::LoadU(d, e + q * step + p), mx));
      hn::StoreU(v, d, o + q * step + p);
      sum = hn::Add(sum, v);
    }
    const auto inv = hn::Div(hn::Set(d, 1.f), sum);
    for (int64_t q = 0; q < kk; ++q)
      hn::StoreU(hn::Mul(hn::LoadU(d, o + q * step + p), inv), d, o + q * step + p);
  }
  for (; p < hw; ++p) {
    float mx = e[p];
    for (int64_t q = 1; q < kk; ++q) mx = std::max(mx, e[q * step + p]);
    float sum = 0.f;
    for (int64_t q = 0; q < kk; ++q) {
      o[q * step + p] = std::exp(e[q * step + p] - mx);
      sum += o[q * step + p];
    }
    const float inv = 1.f / sum;
    for (int64_t q = 0; q < kk; ++q) o[q * step + p] *= inv;
  }
  // zero the weights of out-of-image source pixels (boundary rows / columns only)
  for (int64_t q = 0; q < kk; ++q) {
    const int64_t di = q / k - r, dj = q % k - r;
    float* oq = o + q * step;
    for (int64_t y = 0; y < h; ++y) {
      float* row = oq + y * w;
      if (y + di < 0 || y + di >= h) {
        std::fill(row, row + w, 0.f);
        continue;
      }
      for (int64_t x = 0; x < std::min(w, -dj); ++x) row[x] = 0.f;              // x + dj < 0
      for (int64_t x = std::max<int64_t>(0, w - dj); x < w; ++x) row[x] = 0.f;  // x + dj >= w
    }
  }
}

// acc[v·N + l] = Σ_{i, j < k} wsub[(i·k + j)·tap + p0 + v·N + l] · x0[p0 + v·N + l + (i − r)·W + j
// − r] for V whole vectors: V independent accumulator chains (one chain is FMA-latency bound).
template <int V>
HWY_INLINE void carafe_taps(const float* x0, const float* wsub, int64_t p0, int64_t k, int64_t r,
                            int64_t w, int64_t tap, float* acc) {
  const hn::ScalableTag<float> d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<decltype(d)> a[V];
  for (int v = 0; v < V; ++v) a[v] = hn::Zero(d);
  for (int64_t i = 0; i < k; ++i) {
    const float* xi = x0 + p0 + (i - r) * w - r;
    const float* wi = wsub + i * k * tap + p0;
    for (int64_t j = 0; j < k; ++j)
      for (int v = 0; v < V; ++v)
        a[v] = hn::MulAdd(hn::LoadU(d, wi + j * tap + v * n), hn::LoadU(d, xi + j + v * n), a[v]);
  }
  for (int v = 0; v < V; ++v) hn::Store(a[v], d, acc + v * n);
}

// y[b, c] from the padded plane xp (pad floats of zeros before and after the H·W values).
void carafe_reassemble_plane(const float* xp, const float* wts_b, int64_t h, int64_t w, int64_t k,
                             int64_t s, float* yc) {
  constexpr int64_t kBlock = 4;  // vectors per accumulator block
  const hn::ScalableTag<float> d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const int64_t ss = s * s, hw = h * w, r = k / 2, pad = r * w + r;
  const int64_t tap = ss * hw;  // weight plane stride
  const float* x0 = xp + pad;
  alignas(64) float acc[kBlock * 64];  // n <= 64 lanes of float on every target
  for (int64_t sub = 0; sub < ss; ++sub) {
    const int64_t py = sub / s, px = sub % s;
    const float* wsub = wts_b + sub * hw;  // plane q at wsub + q·s²·H·W
    for (int64_t p0 = 0; p0 < hw;) {
      int64_t cnt;
      if (hw - p0 >= kBlock * n) {
        carafe_taps<kBlock>(x0, wsub, p0, k, r, w, tap, acc);
        cnt = kBlock * n;
      } else if (hw - p0 >= n) {
        carafe_taps<1>(x0, wsub, p0, k, r, w, tap, acc);
        cnt = n;
      } else {  // the last partial vector, scalar
        cnt = hw - p0;
        for (int64_t t = 0; t < cnt; ++t) {
          float a = 0.f;
          for (int64_t i = 0; i < k; ++i) {
            const float* xi = x0 + p0 + t + (i - r) * w - r;
            const float* wi = wsub + i * k * tap + p0 + t;
            for (int64_t j = 0; j < k; ++j) a += wi[j * tap] * xi[j];
          }
          acc[t] = a;
        }
      }
      // scatter to the sub-pixel grid: (Y, X) walks the block's positions row by row
      int64_t y = p0 / w, x = p0 - y * w;
      for (int64_t t = 0; t < cnt; ++t) {
        yc[(s * y + py) * (s * w) + s * x + px] = acc[t];
        if (++x == w) x = 0, ++y;
      }
      p0 += cnt;
    }
  }
}

void CarafeImpl(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
                int64_t k, int64_t s, float* scratch, float* y) {
  const int64_t kk = k * k, ss = s * s, hw = h * w, r = k / 2, pad = r * w + r;
  float* wts = scratch;                       // [B, k², s², H·W]
  float* xpads = scratch + b * kk * ss * hw;  // [B·C, pad + H·W + pad]
#pragma omp parallel for schedule(static) if (b * kk * ss * hw > 8192)
  for (int64_t task = 0; task < b * ss; ++task)
    carafe_weights(enc, task / ss, task % ss, h, w, k, s, wts);
#pragma omp parallel for schedule(static) if (b * c * ss * hw > 8192)
  for (int64_t task = 0; task < b * c; ++task) {
    const int64_t bi = task / c;
    float* xp = xpads + task * (hw + 2 * pad);
    std::fill(xp, xp + pad, 0.f);
    std::memcpy(xp + pad, x + task * hw, sizeof(float) * static_cast<size_t>(hw));
    std::fill(xp + pad + hw, xp + 2 * pad + hw, 0.f);
    carafe_reassemble_plane(xp, wts + bi * kk * ss * hw, h, w, k, s, y + task * ss * hw);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace duet::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace duet::cpu {

HWY_EXPORT(CarafeImpl);

void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w, int64_t k,
            int64_t s, float* scratch, float* y) {
  HWY_DYNAMIC_DISPATCH(CarafeImpl)(x, enc, b, c, h, w, k, s, scratch, y);
}

int64_t carafe_scratch_floats(int64_t b, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s) {
  const int64_t pad = (k / 2) * w + k / 2;
  return b * k * k * s * s * h * w + b * c * (h * w + 2 * pad);
}

}  // namespace duet::cpu
#endif  // HWY_ONCE
