// CARAFE: pixel-shuffle + softmax over the k*k reassembly weights fused into one pass, then the
// reassembly (OpenMP over batch × channels).
#include <algorithm>
#include <cmath>

#include "backends/cpu/cpu_kernels.h"

namespace duet::cpu {

void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w, int64_t k,
            int64_t s, float* scratch, float* y) {
  const int64_t kk = k * k, ho = h * s, wo = w * s, hwo = ho * wo, r = k / 2;
  // scratch [B, k*k, sH, sW]: softmax_q(enc[b, q*s*s + (Y%s)*s + X%s, Y/s, X/s])
#pragma omp parallel for collapse(2) schedule(static) if (b * kk * hwo > 8192)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t yy = 0; yy < ho; ++yy) {
      for (int64_t xx = 0; xx < wo; ++xx) {
        const int64_t sub = (yy % s) * s + (xx % s), src = (yy / s) * w + xx / s;
        const float* e = enc + (bi * kk * s * s + sub) * h * w + src;  // step s*s*h*w per q
        const int64_t step = s * s * h * w;
        float mx = -INFINITY;
        for (int64_t q = 0; q < kk; ++q) mx = std::max(mx, e[q * step]);
        float sum = 0.f;
        float* o = scratch + bi * kk * hwo + yy * wo + xx;
        for (int64_t q = 0; q < kk; ++q) {
          const float v = std::exp(e[q * step] - mx);
          o[q * hwo] = v;
          sum += v;
        }
        const float inv = 1.f / sum;
        for (int64_t q = 0; q < kk; ++q) o[q * hwo] *= inv;
      }
    }
    // y[b, c, Y, X] = sum_q w[b, q, Y, X] x[b, c, Y/s + i - r, X/s + j - r]
#pragma omp parallel for collapse(2) schedule(static) if (b * c * hwo > 8192)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci) {
      const float* xc = x + (bi * c + ci) * h * w;  // [H, W]
      float* yc = y + (bi * c + ci) * hwo;          // [sH, sW]
      const float* wb = scratch + bi * kk * hwo;
      for (int64_t yy = 0; yy < ho; ++yy) {
        float* yrow = yc + yy * wo;
        std::fill(yrow, yrow + wo, 0.f);
        for (int64_t i = 0; i < k; ++i) {
          const int64_t sy = yy / s + i - r;
          if (sy < 0 || sy >= h) continue;
          const float* xrow = xc + sy * w;
          for (int64_t j = 0; j < k; ++j) {
            const float* wrow = wb + (i * k + j) * hwo + yy * wo;
            // valid X: 0 <= X/s + j - r < w
            const int64_t x_lo = std::max<int64_t>(0, (r - j) * s);
            const int64_t x_hi = std::min<int64_t>(wo, (w + r - j) * s);
            for (int64_t xx = x_lo; xx < x_hi; ++xx) yrow[xx] += wrow[xx] * xrow[xx / s + j - r];
          }
        }
      }
    }
}

}  // namespace duet::cpu
