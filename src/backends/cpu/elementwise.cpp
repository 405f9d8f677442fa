#include "backends/cpu/elementwise.h"

#include <cmath>
#include <cstring>

namespace duet::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;  // below this, threading costs more than it saves
inline float sigm(float x) { return 1.0f / (1.0f + std::exp(-x)); }
}  // namespace

void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b, int64_t n,
                    int64_t d) {
#pragma omp parallel for collapse(2) if (b * n * d > kParallelMin)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t t = 0; t < n; ++t) {
      float* xr = x + (bi * n + t) * d;
      const float* yr = y + (bi * n + t) * d;
      if (g) {
        const float* gr = g + bi * gstride;
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) xr[j] += gr[j] * yr[j];
      } else {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) xr[j] += yr[j];
      }
    }
}

void silu_copy(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigm(x[i]);
}

void add_broadcast(float* x, const float* y, int64_t outer, int64_t n) {
  if (outer == 1) {  // a plain x += y (residuals): threads split the row
#pragma omp parallel for simd if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
    return;
  }
#pragma omp parallel for if (outer * n > kParallelMin)
  for (int64_t o = 0; o < outer; ++o) {
    float* xr = x + o * n;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) xr[i] += y[i];
  }
}

void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b, int64_t c,
          int64_t hw) {
#pragma omp parallel for collapse(2) if (b * c * hw > kParallelMin)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci) {
      const float s1 = 1.0f + scale[bi * mstride + ci], sh = shift[bi * mstride + ci];
      float* p = h + (bi * c + ci) * hw;
#pragma omp simd
      for (int64_t i = 0; i < hw; ++i) p[i] = p[i] * s1 + sh;
    }
}

void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
              const float* scale, int64_t mod_stride, float* y) {
#pragma omp parallel for collapse(2) if (b * n * d > kParallelMin)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t t = 0; t < n; ++t) {
      const float* sc = scale + bi * mod_stride;
      const float* sh = shift + bi * mod_stride;
      const float* xr = x + (bi * n + t) * d;
      float* yr = y + (bi * n + t) * d;
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] = xr[j] * (1.0f + sc[j]) + sh[j];
    }
}

void gated_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                int64_t b, int64_t c, int64_t hw) {
#pragma omp parallel for collapse(2) if (b * c * hw > kParallelMin)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci) {
      const float s1 = 1.0f + scale[bi * mstride + ci], sh = shift[bi * mstride + ci];
      const float sg = sigm(g[bi * mstride + ci]);
      float* p = h + (bi * c + ci) * hw;
#pragma omp simd
      for (int64_t i = 0; i < hw; ++i) p[i] = p[i] + sg * ((p[i] * s1 + sh) - p[i]);
    }
}

void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb, int64_t batch,
                     int64_t hw, float* y) {
  for (int64_t bi = 0; bi < batch; ++bi) {
    std::memcpy(y + bi * (ca + cb) * hw, a + bi * ca * hw, sizeof(float) * ca * hw);
    std::memcpy(y + (bi * (ca + cb) + ca) * hw, bsrc + bi * cb * hw, sizeof(float) * cb * hw);
  }
}

void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                      int64_t hw, float* y) {
  for (int64_t bi = 0; bi < batch; ++bi) {
    std::memcpy(y + bi * (ca + cm) * hw, a + bi * ca * hw, sizeof(float) * ca * hw);
    for (int64_t c = 0; c < cm; ++c) {
      float* p = y + (bi * (ca + cm) + ca + c) * hw;
      const float v = m[bi * cm + c];
      for (int64_t i = 0; i < hw; ++i) p[i] = v;
    }
  }
}

void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c, int64_t hw) {
#pragma omp parallel for collapse(2) if (b * c * hw > kParallelMin)
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci) {
      const float a = ac[bi * c + ci];
      float* p = h + (bi * c + ci) * hw;
      const float* s = as + (bi * c + ci) * hw;
#pragma omp simd
      for (int64_t i = 0; i < hw; ++i) p[i] = p[i] * (a * s[i]);
    }
}

void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha, int64_t b,
          int64_t per, float* eps) {
  for (int64_t bi = 0; bi < b; ++bi) {
    const float a = alpha[bi], one_minus = 1.0f - a;
    const int64_t o = bi * per;
#pragma omp simd
    for (int64_t i = 0; i < per; ++i)
      eps[o + i] = ((eps_s[o + i] - hp_s[o + i]) + a * hp_s[o + i]) + one_minus * eps_d[o + i];
  }
}

}  // namespace duet::cpu
