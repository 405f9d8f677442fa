// CSWin stripe attention of the cpu backend. Twin: ops::cswin_attention (double accumulation),
// compared in test_ops.cpp and duet_backend_ops. Per branch (ops/cswin_layout.h):
//   gather   q, k, v of every window into a.scratch as [B * windows, len, width] (zero rows for
//            the padding slots of a ragged last stripe) and the key mask [B * windows, len];
//   attend   cpu::attention over B * windows "images" of len tokens (its tiled online softmax;
//            padding keys masked, padding queries computed and dropped);
//   scatter  out = o + lepe_b + sum of the LePE taps over the token's window, the taps repacked
//            [k*k, D] so the channel loop is contiguous.
// fp32 throughout; no allocation (everything lives in the caller's scratch).
#include <cstring>

#include "backends/cpu/cpu_kernels.h"

namespace duet::cpu {

void cswin_attention(const ops::CswinAttentionArgs& a) {
  const int64_t d = a.head_dim, D = a.heads * d, N = a.gh * a.gw, r = a.kernel / 2;
  const int64_t kk = a.kernel * a.kernel;
  const int64_t total =
      ops::cswin_scratch_floats(a.batch, a.heads, d, a.gh, a.gw, a.stripe, a.kernel);
  float* taps = a.scratch + total - kk * D;  // [k*k, D]
  for (int64_t t = 0; t < kk; ++t)
    for (int64_t c = 0; c < D; ++c) taps[t * D + c] = a.lepe_w[c * kk + t];
  for (int which = 0; which < 2; ++which) {
    const ops::CswinBranch br = ops::cswin_branch(which, a.heads, d, a.gh, a.gw, a.stripe);
    if (br.nheads == 0) continue;
    const int64_t W = br.width, slots = a.batch * br.windows * br.len;
    float* qs = a.scratch;  // [B * windows * len, W] each
    float* ks = qs + slots * W;
    float* vs = ks + slots * W;
    float* os = vs + slots * W;
    auto* mask = reinterpret_cast<uint8_t*>(os + slots * W);  // [B * windows, len]
#pragma omp parallel for
    for (int64_t i = 0; i < slots; ++i) {
      const int64_t b = i / (br.windows * br.len), s = (i / br.len) % br.windows, t = i % br.len;
      const int64_t n = ops::cswin_token(br, a.gh, a.gw, a.stripe, s, t);
      mask[i] = n >= 0;
      if (n < 0) {
        std::memset(qs + i * W, 0, sizeof(float) * W);
        std::memset(ks + i * W, 0, sizeof(float) * W);
        std::memset(vs + i * W, 0, sizeof(float) * W);
        continue;
      }
      const int64_t row = b * N + n;
      std::memcpy(qs + i * W, a.q + row * a.ldq + br.c0, sizeof(float) * W);
      std::memcpy(ks + i * W, a.k + row * a.ldk + br.c0, sizeof(float) * W);
      std::memcpy(vs + i * W, a.v + row * a.ldv + br.c0, sizeof(float) * W);
    }
    ops::AttentionArgs at;
    at.q = qs;
    at.k = ks;
    at.v = vs;
    at.ldq = at.ldk = at.ldv = W;
    at.key_mask = mask;
    at.out = os;
    at.ldo = W;
    at.batch = a.batch * br.windows;
    at.heads = br.nheads;
    at.nq = at.nk = br.len;
    at.head_dim = d;
    cpu::attention(at);
#pragma omp parallel for
    for (int64_t i = 0; i < slots; ++i) {
      const int64_t b = i / (br.windows * br.len), s = (i / br.len) % br.windows, t = i % br.len;
      const int64_t n = ops::cswin_token(br, a.gh, a.gw, a.stripe, s, t);
      if (n < 0) continue;
      const int64_t row = n / a.gw, col = n % a.gw;
      float* out = a.out + (b * N + n) * a.ldo + br.c0;
      const float* o = os + i * W;
      const float* bias = a.lepe_b + br.c0;
#pragma omp simd
      for (int64_t c = 0; c < W; ++c) out[c] = o[c] + bias[c];
      for (int64_t di = -r; di <= r; ++di)
        for (int64_t dj = -r; dj <= r; ++dj) {
          if (!ops::cswin_same_window(br, a.gh, a.gw, a.stripe, row, col, di, dj)) continue;
          const float* vn = a.v + (b * N + (row + di) * a.gw + col + dj) * a.ldv + br.c0;
          const float* w = taps + ((di + r) * a.kernel + dj + r) * D + br.c0;
#pragma omp simd
          for (int64_t c = 0; c < W; ++c) out[c] += w[c] * vn[c];
        }
    }
  }
}

}  // namespace duet::cpu
