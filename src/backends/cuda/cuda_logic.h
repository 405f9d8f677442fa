// The pure logic of the CUDA backend: tile and split heuristics, index maths, the online-softmax
// update, bf16 rounding. Every function is `__host__ __device__` under nvcc and plain inline C++
// under g++ (DUET_HD is empty there), so the kernels and the host unit tests
// (tests/cpp/test_cuda_host.cpp, compiled in every build, GPU or not) run the same code.
// No CUDA headers here: this file must compile without the toolkit.
#pragma once

#include <math.h>

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define DUET_HD __host__ __device__
#else
#define DUET_HD
#endif

namespace duet::cuda_logic {

// ---- tiles -----------------------------------------------------------------------------------
constexpr int kAttnQTile = 64;     // query rows per attention block
constexpr int kAttnKvTile = 128;   // key / value rows staged in shared memory per step
constexpr int kAttnThreads = 256;  // 64 query rows x 4 threads per row
constexpr int kAttnThreadsPerRow = kAttnThreads / kAttnQTile;
constexpr int kAttnMaxHeadDim = 128;  // the tiled kernel's limit; larger heads take the naive one

DUET_HD inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Head-dim bucket of the tiled kernel (its register / shared-memory size): 32, 64 or 128; 0 when
// head_dim is outside [1, 128] (the naive kernel runs then).
DUET_HD inline int attn_head_bucket(int64_t head_dim) {
  if (head_dim < 1 || head_dim > kAttnMaxHeadDim) return 0;
  if (head_dim <= 32) return 32;
  if (head_dim <= 64) return 64;
  return 128;
}

// Shared-memory row stride (floats) of a tile of `bucket`-wide rows: +1 float of padding so that
// the 32 lanes reading column e of 32 different rows hit 32 different banks.
DUET_HD inline int padded_stride(int bucket) { return bucket + 1; }

// Dynamic shared memory of the tiled attention kernel: Q tile, one K-or-V tile (K and V are
// staged one after the other in the same buffer), the score tile [64, 128 + 1].
DUET_HD inline int64_t attn_smem_bytes(int bucket) {
  const int64_t s = padded_stride(bucket);
  return static_cast<int64_t>(sizeof(float)) *
         (kAttnQTile * s + kAttnKvTile * s + kAttnQTile * (kAttnKvTile + 1));
}

// FlashAttention's split-KV heuristic: when batch x heads x query tiles (`blocks`) under-fill the
// GPU, split each block's key range into `s` chunks (combined afterwards). Wave efficiency of s:
// w = blocks * s / sms, eff = w / ceil(w). Returns the smallest s whose efficiency is within 85 %
// of the best over s in [1, min(max_splits, sms, kv_tiles)]; a split count that gives the same
// number of key tiles per split as s - 1 is not eligible (it adds work, not parallelism).
// blocks >= 80 % of the SMs: 1 (no split).
DUET_HD inline int split_kv_heuristic(int64_t blocks, int sms, int64_t kv_tiles, int max_splits) {
  if (blocks <= 0 || sms <= 0 || kv_tiles <= 1) return 1;
  if (blocks * 10 >= static_cast<int64_t>(sms) * 8) return 1;
  int64_t top = max_splits;
  if (top > sms) top = sms;
  if (top > kv_tiles) top = kv_tiles;
  if (top > 128) top = 128;
  auto eligible = [&](int64_t s) {
    return s == 1 || ceil_div(kv_tiles, s) != ceil_div(kv_tiles, s - 1);
  };
  auto efficiency = [&](int64_t s) {
    const double waves = static_cast<double>(blocks * s) / sms;
    const double full = static_cast<double>(ceil_div(blocks * s, sms));
    return waves / full;
  };
  double best = 0;
  for (int64_t s = 1; s <= top; ++s)
    if (eligible(s) && efficiency(s) > best) best = efficiency(s);
  for (int64_t s = 1; s <= top; ++s)
    if (eligible(s) && efficiency(s) >= 0.85 * best) return static_cast<int>(s);
  return 1;
}

// Key range [begin, end) of split `i` of `splits`: whole KV tiles, spread evenly.
DUET_HD inline void split_range(int64_t nk, int splits, int i, int64_t* begin, int64_t* end) {
  const int64_t tiles = ceil_div(nk, kAttnKvTile);
  const int64_t per = ceil_div(tiles, splits);
  int64_t b = static_cast<int64_t>(i) * per * kAttnKvTile, e = b + per * kAttnKvTile;
  if (b > nk) b = nk;
  if (e > nk) e = nk;
  *begin = b;
  *end = e;
}

// ---- online softmax --------------------------------------------------------------------------
// One query row's running state over key tiles: max m, sum l of exp(s - m); the output
// accumulator o (kept by the caller) is scaled by `rescale` whenever m grows.
struct SoftmaxState {
  float m;  // -inf before any unmasked key
  float l;
};
DUET_HD inline SoftmaxState softmax_init() { return {-INFINITY, 0.0f}; }
// exp with exp(-inf) = 0 and the (-inf) - (-inf) case defined as 0 weight.
DUET_HD inline float exp_diff(float a, float m) {
  if (a == -INFINITY) return 0.0f;
  return expf(a - m);
}
// Folds in a tile whose largest score is tile_max and whose sum of exp(s - new_m) is computed by
// the caller afterwards: returns the new max and sets *rescale = exp(old_m - new_m), the factor
// for l and o. The caller then adds the tile's sum to l.
DUET_HD inline float softmax_advance(SoftmaxState* st, float tile_max, float* rescale) {
  const float nm = st->m > tile_max ? st->m : tile_max;
  *rescale = exp_diff(st->m, nm);
  st->l *= *rescale;
  st->m = nm;
  return nm;
}
// Merges two partial states (split-KV combine): returns the factors for each partial's output.
DUET_HD inline SoftmaxState softmax_merge(SoftmaxState a, SoftmaxState b, float* fa, float* fb) {
  const float m = a.m > b.m ? a.m : b.m;
  *fa = exp_diff(a.m, m);
  *fb = exp_diff(b.m, m);
  return {m, a.l * *fa + b.l * *fb};
}

// ---- index maths -----------------------------------------------------------------------------
// unpatchify: flat index of out [B, C, gh*p, gw*p] -> flat index of y [B, gh*gw, p*p*C] (layout
// (pi, pj, c) within a token row).
DUET_HD inline int64_t unpatchify_src(int64_t o, int64_t gh, int64_t gw, int64_t p, int64_t c) {
  const int64_t ww = gw * p, hh = gh * p;
  const int64_t x = o % ww, yy = (o / ww) % hh, ci = (o / (ww * hh)) % c, b = o / (ww * hh * c);
  const int64_t i = yy / p, pi = yy % p, j = x / p, pj = x % p;
  return (b * gh * gw + i * gw + j) * (p * p * c) + (pi * p + pj) * c + ci;
}

// CARAFE: flat index of the pixel-shuffled logits [B, k*k, H*s, W*s] -> flat index of the
// encoder output enc [B, k*k*s*s, H, W] (ops::pixel_shuffle with c = k*k).
DUET_HD inline int64_t carafe_enc_src(int64_t o, int64_t kk, int64_t h, int64_t w, int64_t s) {
  const int64_t wo = w * s, ho = h * s;
  const int64_t xx = o % wo, yy = (o / wo) % ho, q = (o / (wo * ho)) % kk, b = o / (wo * ho * kk);
  const int64_t src_c = q * s * s + (yy % s) * s + (xx % s);
  return ((b * kk * s * s + src_c) * h + yy / s) * w + xx / s;
}

// Output size of a convolution along one axis.
DUET_HD inline int64_t conv_out(int64_t in, int64_t k, int64_t stride, int64_t pad) {
  return (in + 2 * pad - k) / stride + 1;
}

// Grid size of a grid-stride elementwise kernel: enough blocks for n elements, capped (each
// thread then loops). Always >= 1.
DUET_HD inline int grid_for(int64_t n, int threads, int max_blocks) {
  int64_t g = ceil_div(n > 0 ? n : 1, threads);
  if (g > max_blocks) g = max_blocks;
  return static_cast<int>(g);
}

// LayerNorm launch shape: one warp per row up to D = 1024 (each lane holds D / 32 values in
// registers), a whole block per row beyond.
DUET_HD inline bool norm_warp_per_row(int64_t d) { return d <= 1024; }

// bf16 round-to-nearest-even, bit-identical to ops::bf16_bits (finite inputs).
DUET_HD inline uint16_t bf16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
DUET_HD inline float bf16_value(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// The high-pass mask on cuFFT's half spectrum [H, W/2 + 1], scaled by 1 / (H W) (cuFFT's C2R is
// unnormalised). The full mask is radial, M[u, v] = M[-u, -v], so the half spectrum carries it
// exactly. half must hold h * (w / 2 + 1) floats.
inline void half_spectrum_mask(const float* mask, int64_t h, int64_t w, float* half) {
  const int64_t wh = w / 2 + 1;
  const float norm = 1.0f / static_cast<float>(h * w);
  for (int64_t u = 0; u < h; ++u)
    for (int64_t v = 0; v < wh; ++v) half[u * wh + v] = mask[u * w + v] * norm;
}

}  // namespace duet::cuda_logic
