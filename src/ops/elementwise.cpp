#include "ops/elementwise.h"

#include <cmath>
#include <vector>

namespace duet::ops {

namespace {
float sigm(float x) { return 1.0f / (1.0f + std::exp(-x)); }
}  // namespace

void add_broadcast(float* x, const float* y, int64_t outer, int64_t n) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < n; ++i) x[o * n + i] += y[i];
}

void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b, int64_t n,
                    int64_t d) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < d; ++j) {
        const int64_t at = (bi * n + t) * d + j;
        if (g) {
          x[at] += g[bi * gstride + j] * y[at];
        } else {
          x[at] += y[at];
        }
      }
}

void silu_copy(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigm(x[i]);
}

void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b, int64_t c,
          int64_t hw) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t i = 0; i < hw; ++i) {
        float& v = h[(bi * c + ci) * hw + i];
        v = v * (1.0f + scale[bi * mstride + ci]) + shift[bi * mstride + ci];
      }
}

void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
              const float* scale, int64_t mod_stride, float* y) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t t = 0; t < n; ++t)
      for (int64_t j = 0; j < d; ++j) {
        const int64_t i = (bi * n + t) * d + j;
        y[i] = x[i] * (1.0f + scale[bi * mod_stride + j]) + shift[bi * mod_stride + j];
      }
}

void gated_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                int64_t b, int64_t c, int64_t hw) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t i = 0; i < hw; ++i) {
        float& v = h[(bi * c + ci) * hw + i];
        const float s1 = 1.0f + scale[bi * mstride + ci], sh = shift[bi * mstride + ci];
        v = v + sigm(g[bi * mstride + ci]) * ((v * s1 + sh) - v);
      }
}

void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb, int64_t batch,
                     int64_t hw, float* y) {
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t c = 0; c < ca + cb; ++c)
      for (int64_t i = 0; i < hw; ++i)
        y[(bi * (ca + cb) + c) * hw + i] =
            c < ca ? a[(bi * ca + c) * hw + i] : bsrc[(bi * cb + c - ca) * hw + i];
}

void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                      int64_t hw, float* y) {
  for (int64_t bi = 0; bi < batch; ++bi)
    for (int64_t c = 0; c < ca + cm; ++c)
      for (int64_t i = 0; i < hw; ++i)
        y[(bi * (ca + cm) + c) * hw + i] = c < ca ? a[(bi * ca + c) * hw + i] : m[bi * cm + c - ca];
}

void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c, int64_t hw) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t i = 0; i < hw; ++i) {
        const int64_t at = (bi * c + ci) * hw + i;
        h[at] = h[at] * (ac[bi * c + ci] * as[at]);
      }
}

void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha, int64_t b,
          int64_t per, float* eps) {
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t i = 0; i < per; ++i) {
      const int64_t at = bi * per + i;
      const float a = alpha[bi];
      eps[at] = ((eps_s[at] - hp_s[at]) + a * hp_s[at]) + (1.0f - a) * eps_d[at];
    }
}

void embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b, int64_t l,
                  int64_t d, float* x) {
  for (int64_t r = 0; r < b * l; ++r)
    for (int64_t j = 0; j < d; ++j) x[r * d + j] = tok[ids[r] * d + j] + pos[(r % l) * d + j];
}

void masked_mean(const float* e, const uint8_t* m, int64_t b, int64_t l, int64_t d, float* p) {
  std::vector<double> acc(static_cast<size_t>(d));
  for (int64_t bi = 0; bi < b; ++bi) {
    double cnt = 0;
    for (double& a : acc) a = 0;
    for (int64_t t = 0; t < l; ++t) {
      if (!m[bi * l + t]) continue;
      cnt += 1;
      for (int64_t j = 0; j < d; ++j) acc[j] += e[(bi * l + t) * d + j];
    }
    for (int64_t j = 0; j < d; ++j) p[bi * d + j] = static_cast<float>(acc[j] / cnt);
  }
}

}  // namespace duet::ops
