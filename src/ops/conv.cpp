// Reference convolution and image ops (NCHW): conv2d, patch embedding, pooling, pixel shuffle,
// CARAFE, DiT unpatchify.
#include <cmath>
#include <vector>

#include "ops/ops.h"

namespace duet::ops {

void conv2d(const float* x, const float* w, const float* bias, int64_t b, int64_t cin, int64_t h,
            int64_t wd, int64_t cout, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
            float* y) {
  const int64_t ho = (h + 2 * pad - kh) / stride + 1, wo = (wd + 2 * pad - kw) / stride + 1;
  for (int64_t bi = 0; bi < b; ++bi) {
    for (int64_t o = 0; o < cout; ++o) {
      for (int64_t oy = 0; oy < ho; ++oy) {
        for (int64_t ox = 0; ox < wo; ++ox) {
          double acc = bias ? bias[o] : 0.0;
          for (int64_t ci = 0; ci < cin; ++ci) {
            const float* xc = x + (bi * cin + ci) * h * wd;    // [H, W]
            const float* wc = w + ((o * cin + ci) * kh) * kw;  // [KH, KW]
            for (int64_t dy = 0; dy < kh; ++dy) {
              const int64_t iy = oy * stride - pad + dy;
              if (iy < 0 || iy >= h) continue;
              for (int64_t dx = 0; dx < kw; ++dx) {
                const int64_t ix = ox * stride - pad + dx;
                if (ix < 0 || ix >= wd) continue;
                acc += static_cast<double>(xc[iy * wd + ix]) * wc[dy * kw + dx];
              }
            }
          }
          y[((bi * cout + o) * ho + oy) * wo + ox] = static_cast<float>(acc);
        }
      }
    }
  }
}

void patch_embed(const float* x, const float* w, const float* bias, int64_t b, int64_t c, int64_t h,
                 int64_t wd, int64_t d, int64_t p, float* y) {
  const int64_t gh = h / p, gw = wd / p, n = gh * gw;
  std::vector<float> tmp(static_cast<size_t>(b * d * n));  // [B, D, gh, gw]
  conv2d(x, w, bias, b, c, h, wd, d, p, p, p, 0, tmp.data());
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < d; ++j) y[(bi * n + t) * d + j] = tmp[(bi * d + j) * n + t];
}

void global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw, float* y) {
  for (int64_t i = 0; i < b * c; ++i) {
    double s = 0;
    for (int64_t p = 0; p < hw; ++p) s += x[i * hw + p];
    y[i] = static_cast<float>(s / static_cast<double>(hw));
  }
}

void pixel_shuffle(const float* x, int64_t b, int64_t c, int64_t h, int64_t wd, int64_t s,
                   float* y) {
  const int64_t ho = h * s, wo = wd * s;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t yy = 0; yy < ho; ++yy)
        for (int64_t xx = 0; xx < wo; ++xx) {
          const int64_t src_c = ci * s * s + (yy % s) * s + (xx % s);
          y[((bi * c + ci) * ho + yy) * wo + xx] =
              x[((bi * c * s * s + src_c) * h + yy / s) * wd + xx / s];
        }
}

void carafe_reassemble(const float* x, const float* wts, int64_t b, int64_t c, int64_t h,
                       int64_t wd, int64_t k, int64_t s, float* y) {
  const int64_t ho = h * s, wo = wd * s, r = k / 2;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t yy = 0; yy < ho; ++yy)
        for (int64_t xx = 0; xx < wo; ++xx) {
          double acc = 0;
          for (int64_t i = 0; i < k; ++i) {
            const int64_t sy = yy / s + i - r;
            if (sy < 0 || sy >= h) continue;
            for (int64_t j = 0; j < k; ++j) {
              const int64_t sx = xx / s + j - r;
              if (sx < 0 || sx >= wd) continue;
              const float wv = wts[((bi * k * k + i * k + j) * ho + yy) * wo + xx];
              acc += static_cast<double>(wv) * x[((bi * c + ci) * h + sy) * wd + sx];
            }
          }
          y[((bi * c + ci) * ho + yy) * wo + xx] = static_cast<float>(acc);
        }
}

void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t wd,
            int64_t k, int64_t s, float* scratch, float* y) {
  const int64_t kk = k * k, hw_out = h * s * wd * s;
  pixel_shuffle(enc, b, kk, h, wd, s, scratch);  // [B, k*k, sH, sW]
  // softmax over the k*k channel axis, per output pixel
  std::vector<double> e(static_cast<size_t>(kk));
  for (int64_t bi = 0; bi < b; ++bi) {
    float* base = scratch + bi * kk * hw_out;
    for (int64_t p = 0; p < hw_out; ++p) {
      float mx = -INFINITY;
      for (int64_t q = 0; q < kk; ++q) mx = std::fmax(mx, base[q * hw_out + p]);
      double sum = 0;
      for (int64_t q = 0; q < kk; ++q)
        sum += e[q] = std::exp(static_cast<double>(base[q * hw_out + p]) - mx);
      for (int64_t q = 0; q < kk; ++q) base[q * hw_out + p] = static_cast<float>(e[q] / sum);
    }
  }
  carafe_reassemble(x, scratch, b, c, h, wd, k, s, y);
}

void unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                float* out) {
  const int64_t hh = gh * p, ww = gw * p, row = p * p * c;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t i = 0; i < gh; ++i)
        for (int64_t pi = 0; pi < p; ++pi)
          for (int64_t j = 0; j < gw; ++j)
            for (int64_t pj = 0; pj < p; ++pj)
              out[((bi * c + ci) * hh + i * p + pi) * ww + j * p + pj] =
                  y[(bi * gh * gw + i * gw + j) * row + (pi * p + pj) * c + ci];
}

}  // namespace duet::ops
