// The cpu backend's elementwise glue (residual gating, FiLM, concatenation, fusion): each one
// pass over memory, written so the compiler vectorises it, OpenMP-parallel when large. The float
// expressions are those of the reference twins (ops/elementwise.h), so results are bit-identical.
#pragma once

#include <cstdint>

namespace duet::cpu {

// x[b, n, :] += g[b, :] * y[b, n, :]   (g rows are gstride apart; g == null: x += y). [B, N, D]
void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b, int64_t n,
                    int64_t d);
// y = x * sigmoid(x), n elements
void silu_copy(const float* x, float* y, int64_t n);
// x[o, i] += y[i]  x [outer, n], y [n]
void add_broadcast(float* x, const float* y, int64_t outer, int64_t n);
// NCHW FiLM: h[b, c, :] = h * (1 + scale[b, c]) + shift[b, c]; scale/shift rows mstride apart.
void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b, int64_t c,
          int64_t hw);
// y[b, t, :] = x * (1 + scale[b, :]) + shift[b, :] (folded RepBN blocks). x, y [B, N, D]
void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
              const float* scale, int64_t mod_stride, float* y);
// Gated FiLM (decoder): h = h + sigmoid(g) * ((h * (1 + scale) + shift) - h).
void gated_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                int64_t b, int64_t c, int64_t hw);
// y [B, ca + cb, HW] = concat(a [B, ca, HW], b [B, cb, HW]) along channels.
void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb, int64_t batch,
                     int64_t hw, float* y);
// y [B, ca + cm, HW] = concat(a [B, ca, HW], m [B, cm] broadcast over HW).
void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                      int64_t hw, float* y);
// Dual attention: h[b, c, p] = h * (ac[b, c] * as[b, c, p]).
void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c, int64_t hw);
// eps = ((eps_s - hp_s) + a * hp_s) + (1 - a) * eps_d, a = alpha[b]; per image of `per` floats.
void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha, int64_t b,
          int64_t per, float* eps);

}  // namespace duet::cpu
