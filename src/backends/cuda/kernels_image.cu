// Image-side kernels: activations (after cuBLASLt GEMMs whose epilogue has no such activation),
// fp32 -> bf16 conversion, the direct convolution, CARAFE, unpatchify, the high-pass spectrum
// mask. Convolution is a direct kernel (one thread per output, fp32 sums): correct at every
// shape, not fast; cuDNN (found and linked by CMake) is the planned replacement (docs/gpu.md).
#include <cuda_runtime.h>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_logic.h"

namespace duet::cuda {
namespace {

using namespace cuda_logic;
constexpr int kThreads = 256, kMaxBlocks = 65535;

#define DUET_GRID_STRIDE(i, n)                                                           \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

int grid(int64_t n) { return grid_for(n, kThreads, kMaxBlocks); }

__device__ __forceinline__ float act1(int act, float x) {
  if (act == 1) return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  if (act == 2) return x / (1.0f + expf(-x));
  if (act == 3) return 1.0f / (1.0f + expf(-x));
  return x;
}

__global__ void k_act(int act, float* y, int64_t n) {
  DUET_GRID_STRIDE(i, n) { y[i] = act1(act, y[i]); }
}
__global__ void k_to_bf16(const float* x, int64_t n, uint16_t* y) {
  DUET_GRID_STRIDE(i, n) { y[i] = bf16_bits(x[i]); }
}

// Outputs enumerated in the layout written (NCHW, or tokens [B, Ho*Wo, Cout] with the channel
// fastest so that writes coalesce).
__global__ void k_conv(const float* x, const float* w, const float* bias, int64_t cin, int64_t h,
                       int64_t wd, int64_t cout, int64_t k, int64_t stride, int64_t pad, int64_t ho,
                       int64_t wo, bool tokens_out, int act, bool round_x, float* y,
                       int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    int64_t bi, o, oy, ox;
    if (tokens_out) {
      o = i % cout;
      const int64_t tok = (i / cout) % (ho * wo);
      bi = i / (cout * ho * wo);
      oy = tok / wo;
      ox = tok % wo;
    } else {
      ox = i % wo;
      oy = (i / wo) % ho;
      o = (i / (wo * ho)) % cout;
      bi = i / (wo * ho * cout);
    }
    float acc = bias ? bias[o] : 0.f;
    for (int64_t ci = 0; ci < cin; ++ci) {
      const float* xc = x + (bi * cin + ci) * h * wd;  // [H, W]
      const float* wc = w + (o * cin + ci) * k * k;    // [K, K]
      for (int64_t dy = 0; dy < k; ++dy) {
        const int64_t iy = oy * stride - pad + dy;
        if (iy < 0 || iy >= h) continue;
        for (int64_t dx = 0; dx < k; ++dx) {
          const int64_t ix = ox * stride - pad + dx;
          if (ix < 0 || ix >= wd) continue;
          float xv = xc[iy * wd + ix];
          if (round_x) xv = bf16_value(bf16_bits(xv));
          acc += xv * wc[dy * k + dx];
        }
      }
    }
    y[i] = act1(act, acc);
  }
}

// CARAFE step 1: pixel-shuffle the logits and softmax over k*k per output pixel.
// wts [B, kk, Ho, Wo]; one thread per (b, output pixel).
__global__ void k_carafe_weights(const float* enc, int64_t kk, int64_t h, int64_t w, int64_t s,
                                 float* wts, int64_t total) {
  const int64_t hw_out = h * s * w * s;
  DUET_GRID_STRIDE(i, total) {  // total = B * hw_out
    const int64_t bi = i / hw_out, p = i % hw_out;
    const int64_t base = bi * kk * hw_out + p;  // element q at base + q * hw_out
    float mx = -INFINITY;
    for (int64_t q = 0; q < kk; ++q)
      mx = fmaxf(mx, enc[carafe_enc_src(base + q * hw_out, kk, h, w, s)]);
    float sum = 0.f;
    for (int64_t q = 0; q < kk; ++q) {
      const float e = expf(enc[carafe_enc_src(base + q * hw_out, kk, h, w, s)] - mx);
      wts[base + q * hw_out] = e;
      sum += e;
    }
    for (int64_t q = 0; q < kk; ++q) wts[base + q * hw_out] /= sum;
  }
}
// CARAFE step 2: reassembly, one thread per output element of y [B, C, Ho, Wo].
__global__ void k_carafe_reassemble(const float* x, const float* wts, int64_t c, int64_t h,
                                    int64_t wd, int64_t k, int64_t s, float* y, int64_t total) {
  const int64_t ho = h * s, wo = wd * s, r = k / 2;
  DUET_GRID_STRIDE(i, total) {
    const int64_t xx = i % wo, yy = (i / wo) % ho, ci = (i / (wo * ho)) % c, bi = i / (wo * ho * c);
    float acc = 0.f;
    for (int64_t a = 0; a < k; ++a) {
      const int64_t sy = yy / s + a - r;
      if (sy < 0 || sy >= h) continue;
      for (int64_t bj = 0; bj < k; ++bj) {
        const int64_t sx = xx / s + bj - r;
        if (sx < 0 || sx >= wd) continue;
        acc += wts[((bi * k * k + a * k + bj) * ho + yy) * wo + xx] *
               x[((bi * c + ci) * h + sy) * wd + sx];
      }
    }
    y[i] = acc;
  }
}

__global__ void k_unpatchify(const float* y, int64_t gh, int64_t gw, int64_t p, int64_t c,
                             float* out, int64_t total) {
  DUET_GRID_STRIDE(i, total) { out[i] = y[unpatchify_src(i, gh, gw, p, c)]; }
}

__global__ void k_spectrum_mask(float2* spec, const float* mask, int64_t per, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    const float m = mask[i % per];
    spec[i].x *= m;
    spec[i].y *= m;
  }
}

}  // namespace

void launch_activation(int act, float* y, int64_t n, cudaStream_t st) {
  if (act != 0 && n > 0) k_act<<<grid(n), kThreads, 0, st>>>(act, y, n);
}
void launch_to_bf16(const float* x, int64_t n, uint16_t* y, cudaStream_t st) {
  if (n > 0) k_to_bf16<<<grid(n), kThreads, 0, st>>>(x, n, y);
}
void launch_conv2d(const float* x, const float* w, const float* bias, int64_t b, int64_t cin,
                   int64_t h, int64_t wd, int64_t cout, int64_t k, int64_t stride, int64_t pad,
                   bool tokens_out, int act, bool round_x, float* y, cudaStream_t st) {
  const int64_t ho = conv_out(h, k, stride, pad), wo = conv_out(wd, k, stride, pad);
  const int64_t total = b * cout * ho * wo;
  if (total > 0)
    k_conv<<<grid(total), kThreads, 0, st>>>(x, w, bias, cin, h, wd, cout, k, stride, pad, ho, wo,
                                             tokens_out, act, round_x, y, total);
}
void launch_carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
                   int64_t k, int64_t s, float* scratch, float* y, cudaStream_t st) {
  const int64_t hw_out = h * s * w * s;
  if (b * hw_out <= 0) return;
  k_carafe_weights<<<grid(b * hw_out), kThreads, 0, st>>>(enc, k * k, h, w, s, scratch, b * hw_out);
  if (b * c * hw_out > 0)
    k_carafe_reassemble<<<grid(b * c * hw_out), kThreads, 0, st>>>(x, scratch, c, h, w, k, s, y,
                                                                   b * c * hw_out);
}
void launch_unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                       float* out, cudaStream_t st) {
  const int64_t total = b * gh * gw * p * p * c;
  if (total > 0) k_unpatchify<<<grid(total), kThreads, 0, st>>>(y, gh, gw, p, c, out, total);
}
void launch_spectrum_mask(void* spec, const float* mask_half, int64_t n, int64_t per,
                          cudaStream_t st) {
  if (n * per > 0)
    k_spectrum_mask<<<grid(n * per), kThreads, 0, st>>>(static_cast<float2*>(spec), mask_half, per,
                                                        n * per);
}

}  // namespace duet::cuda
