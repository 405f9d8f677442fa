// duet::ops — the reference implementation of every op the model uses: plain, readable,
// single-threaded loops over fp32 data with double accumulation. This is the "reference twin"
// that the optimised CPU backend (src/backends/cpu/) is tested against, and the executable
// transcription of python/duet_ref/*.py. All tensors are dense row-major; layouts are stated
// per argument ([B, C, H, W] is NCHW, conv weights are OIHW, linear weights are PyTorch [out, in]).
#pragma once

#include <cstdint>
#include <vector>

#include "ops/cswin_layout.h"

namespace duet::ops {

// ---- dense ------------------------------------------------------------------------------------
// y [M, N] = x [M, K] · w[N, K]ᵀ + b [N]   (b may be null)
void linear(const float* x, const float* w, const float* b, int64_t m, int64_t k, int64_t n,
            float* y);
// Affine LayerNorm over the last dim; gamma/beta null = plain (no affine). x, y [M, D].
void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                float eps, float* y);
// adaLN: y[b, n, :] = LN(x[b, n, :]) * (1 + scale[b, :]) + shift[b, :] (plain LN, eps).
// x, y [B, N, D]; shift/scale rows are mod_stride floats apart (chunks of the ada output).
void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                         const float* shift, const float* scale, int64_t mod_stride, float* y);
// GroupNorm over [B, C, HW] with G groups (+ optional SiLU afterwards). gamma/beta [C].
void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                const float* gamma, const float* beta, float eps, bool silu, float* y);

// ---- activations (in place, n elements) ---------------------------------------------------------
void silu(float* x, int64_t n);       // x * sigmoid(x)
void gelu_tanh(float* x, int64_t n);  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void sigmoid(float* x, int64_t n);
float sigmoid1(float x);
float silu1(float x);
float gelu_tanh1(float x);
// Softmax over each of `rows` contiguous rows of length n.
void softmax_rows(float* x, int64_t rows, int64_t n);

// ---- attention ---------------------------------------------------------------------------------
// Multi-head scaled dot-product attention. Token row r of batch b for q/k/v/out starts at
// ptr + (b * N + r) * ld; head h occupies columns [h*dh, (h+1)*dh). key_mask [B, Nk] (1 = real
// token, 0 = padding → -inf score) or null. out [B, Nq, heads*dh] with row stride ldo.
struct AttentionArgs {
  const float* q = nullptr;
  int64_t ldq = 0;
  const float* k = nullptr;
  int64_t ldk = 0;
  const float* v = nullptr;
  int64_t ldv = 0;
  const uint8_t* key_mask = nullptr;
  float* out = nullptr;
  int64_t ldo = 0;
  int64_t batch = 0, heads = 0, nq = 0, nk = 0, head_dim = 0;
};
void attention(const AttentionArgs& a);

// SLAB simplified linear attention over an image token grid (slab_attention.py). Per image b and
// head h, with N = gh*gw tokens, d = head_dim, phi = ReLU:
//   kv = (1/N) sum_n phi(k_n)^T v_n [d, d],  z = (1/N) sum_n phi(k_n) [d]
//   out_n = phi(q_n) kv / (phi(q_n) . z + eps)  +  dwc(v)_n
// dwc: depth-wise kernel x kernel conv over the grid (zero padding kernel/2), weights dwc_w
// [d, kernel, kernel] and dwc_b [d] shared by every head. Rows as in AttentionArgs (token n of
// image b at ptr + (b*N + n) * ld, head h at columns [h*d, (h+1)*d)). scratch: at least
// slab_scratch_floats(batch, heads, head_dim, kernel) floats (a backend may ask for more).
struct SlabAttentionArgs {
  const float* q = nullptr;
  int64_t ldq = 0;
  const float* k = nullptr;
  int64_t ldk = 0;
  const float* v = nullptr;
  int64_t ldv = 0;
  const float* dwc_w = nullptr;  // [d, kernel, kernel]
  const float* dwc_b = nullptr;  // [d]
  float* out = nullptr;          // [B, N, heads*d], row stride ldo
  int64_t ldo = 0;
  float* scratch = nullptr;
  int64_t batch = 0, heads = 0, gh = 0, gw = 0, head_dim = 0, kernel = 1;
  float eps = 1e-6f;
};
// kv and z of every (image, head) + the repacked dwc taps [kernel*kernel, d].
inline int64_t slab_scratch_floats(int64_t batch, int64_t heads, int64_t d, int64_t kernel) {
  return batch * heads * (d * d + d) + kernel * kernel * d;
}
// Reference: double accumulation, single-threaded.
void slab_attention(const SlabAttentionArgs& a);

// CSWin cross-shaped window self-attention with LePE over an image token grid
// (cswin_attention.py; windows: ops/cswin_layout.h). Per image, head h of window w (d = head_dim):
//   out_n = softmax(q_n K_w^T / sqrt(d)) V_w + lepe_b + sum_taps lepe_w * v[neighbour in w]
// lepe_w [heads*d, kernel, kernel], lepe_b [heads*d] (one filter per channel). Rows as in
// AttentionArgs (token n of image b at ptr + (b*N + n) * ld). scratch: at least
// cswin_scratch_floats(batch, heads, head_dim, gh, gw, stripe, kernel) floats.
struct CswinAttentionArgs {
  const float* q = nullptr;
  int64_t ldq = 0;
  const float* k = nullptr;
  int64_t ldk = 0;
  const float* v = nullptr;
  int64_t ldv = 0;
  const float* lepe_w = nullptr;  // [heads*d, kernel, kernel]
  const float* lepe_b = nullptr;  // [heads*d]
  float* out = nullptr;           // [B, N, heads*d], row stride ldo
  int64_t ldo = 0;
  float* scratch = nullptr;
  int64_t batch = 0, heads = 0, gh = 0, gw = 0, head_dim = 0, stripe = 1, kernel = 1;
};
// Reference: double accumulation, single-threaded, window by window; no scratch use.
void cswin_attention(const CswinAttentionArgs& a);

// ---- convolution & image ops (NCHW)
// --------------------------------------------------------------- y [B, Cout, Ho, Wo] = conv(x [B,
// Cin, H, W], w [Cout, Cin, KH, KW]) + b, zero padding. Ho = (H + 2 pad - KH) / stride + 1 (same
// for W).
void conv2d(const float* x, const float* w, const float* bias, int64_t b, int64_t cin, int64_t h,
            int64_t wd, int64_t cout, int64_t kh, int64_t kw, int64_t stride, int64_t pad,
            float* y);
// Patch embedding: conv k = p, stride p, then flatten + transpose: x [B, C, H, W] -> y [B, N, D],
// token n = i * (W/p) + j.
void patch_embed(const float* x, const float* w, const float* bias, int64_t b, int64_t c, int64_t h,
                 int64_t wd, int64_t d, int64_t p, float* y);
// y [B, C] = mean over HW of x [B, C, HW].
void global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw, float* y);
// x [B, C*s*s, H, W] -> y [B, C, H*s, W*s]: y[b, c, h*s+i, w*s+j] = x[b, c*s*s + i*s + j, h, w].
void pixel_shuffle(const float* x, int64_t b, int64_t c, int64_t h, int64_t wd, int64_t s,
                   float* y);
// CARAFE reassembly. wts [B, k*k, H*s, W*s] (already softmaxed over k*k), x [B, C, H, W]:
// y[b, c, Y, X] = sum_{i,j} wts[b, i*k+j, Y, X] * x[b, c, Y/s + i - k/2, X/s + j - k/2] (0
// outside).
void carafe_reassemble(const float* x, const float* wts, int64_t b, int64_t c, int64_t h,
                       int64_t wd, int64_t k, int64_t s, float* y);
// Full CARAFE given the encoder output enc [B, s*s*k*k, H, W] (before pixel shuffle / softmax):
// pixel_shuffle → softmax over k*k → reassemble. `scratch` holds B*k*k*H*s*W*s floats.
void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t wd,
            int64_t k, int64_t s, float* scratch, float* y);
// DiT unpatchify: y [B, N, p*p*C] laid out (pi, pj, c) -> out [B, C, gh*p, gw*p].
void unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                float* out);

// ---- spectral ----------------------------------------------------------------------------------
// M[u, v] over the (unshifted) FFT grid, computed in double, rounded to float (spectral.py).
std::vector<float> highpass_mask(int64_t h, int64_t w, double rho_c, double tau);
// y = Re(IDFT2(M ⊙ DFT2(x))) per image, x/y [n_images, H, W]; naive separable DFT in double.
void highpass(const float* x, int64_t n_images, int64_t h, int64_t w, const float* mask, float* y);

// ---- embeddings
// ---------------------------------------------------------------------------------- [cos(t f_k),
// sin(t f_k)], f_k = max_period^(-k/half), in double -> float. t [B] -> y [B, dim].
void timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period, float* y);
// Fixed 2-D sin-cos embedding [gh*gw, dim] (layers.py pos_embed_2d), double -> float.
std::vector<float> pos_embed_2d(int64_t dim, int64_t gh, int64_t gw);

}  // namespace duet::ops
