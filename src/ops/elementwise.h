// The elementwise glue between the model's ops (residual gating, FiLM, concatenation, fusion,
// embeddings): the plain reference twins. Single-threaded loops, one output element at a time,
// in the float expression order of python/duet_ref — the cpu backend's vectorised, threaded
// versions (backends/cpu/elementwise.h) compute the same expressions and must agree bit for bit
// (duet_backend_ops checks them with NMSE bound 0).
#pragma once

#include <cstdint>

namespace duet::ops {

// x[o, i] += y[i] for o < outer, i < n (outer = 1: x += y). x [outer, n], y [n]
void add_broadcast(float* x, const float* y, int64_t outer, int64_t n);
// x[b, t, :] += g[b, :] * y[b, t, :]; g rows gstride apart; g == null: x += y. x, y [B, N, D]
void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b, int64_t n,
                    int64_t d);
// y = x * sigmoid(x), n elements
void silu_copy(const float* x, float* y, int64_t n);
// NCHW FiLM: h[b, c, :] = h * (1 + scale[b, c]) + shift[b, c]; rows mstride apart. h [B, C, HW]
void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b, int64_t c,
          int64_t hw);
// adaLN modulation without a norm (folded RepBN blocks): y[b, t, :] = x * (1 + scale[b, :]) +
// shift[b, :]; shift/scale rows mod_stride apart. x, y [B, N, D]
void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
              const float* scale, int64_t mod_stride, float* y);
// Gated FiLM: h = h + sigmoid(g) * ((h * (1 + scale) + shift) - h). h [B, C, HW]
void gated_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                int64_t b, int64_t c, int64_t hw);
// y [B, ca + cb, HW] = concat(a [B, ca, HW], b [B, cb, HW]) along channels.
void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb, int64_t batch,
                     int64_t hw, float* y);
// y [B, ca + cm, HW] = concat(a [B, ca, HW], m [B, cm] broadcast over HW).
void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                      int64_t hw, float* y);
// Dual attention: h[b, c, p] = h * (ac[b, c] * as[b, c, p]). h, as [B, C, HW], ac [B, C]
void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c, int64_t hw);
// eps = ((eps_s - hp_s) + a * hp_s) + (1 - a) * eps_d, a = alpha[b]; each image `per` floats.
void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha, int64_t b,
          int64_t per, float* eps);
// x [B, L, D] = tok[ids[b, l]] + pos[l]; ids [B, L] already range-checked. tok [V, D], pos [L', D]
void embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b, int64_t l,
                  int64_t d, float* x);
// p [B, D] = sum_l e[b, l] * m[b, l] / sum_l m[b, l], accumulated in double; e [B, L, D],
// m [B, L] bytes (1 = real token; every row has at least one).
void masked_mean(const float* e, const uint8_t* m, int64_t b, int64_t l, int64_t d, float* p);

}  // namespace duet::ops
