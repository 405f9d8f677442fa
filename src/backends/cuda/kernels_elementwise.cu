// The elementwise glue on the GPU: grid-stride loops, one output element per iteration, in the
// float expression order of ops/elementwise.cpp (the reference twins). sigmoid uses CUDA's expf
// (within 2 ulp of glibc's, so these agree with the reference to ~1e-14 NMSE, not bitwise).
// Reductions (global_avg_pool, masked_mean) run one thread per output in the reference's
// sequential order and double accumulation, so they are bit-exact.
#include <cuda_runtime.h>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_logic.h"

namespace duet::cuda {
namespace {

using cuda_logic::grid_for;
constexpr int kThreads = 256, kMaxBlocks = 65535;

#define DUET_GRID_STRIDE(i, n)                                                           \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ void k_add(float* x, const float* y, int64_t outer, int64_t n) {
  DUET_GRID_STRIDE(i, outer * n) { x[i] += y[i % n]; }
}
__global__ void k_add_gated(float* x, const float* y, const float* g, int64_t gstride, int64_t n,
                            int64_t d, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    if (g) {
      x[i] += g[(i / (n * d)) * gstride + i % d] * y[i];
    } else {
      x[i] += y[i];
    }
  }
}
__global__ void k_silu(const float* x, float* y, int64_t n) {
  DUET_GRID_STRIDE(i, n) { y[i] = x[i] * sigm(x[i]); }
}
__global__ void k_modulate(const float* x, const float* shift, const float* scale,
                           int64_t mod_stride, int64_t n, int64_t d, float* y, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    const int64_t m = (i / (n * d)) * mod_stride + i % d;
    y[i] = x[i] * (1.0f + scale[m]) + shift[m];
  }
}
// g == null: FiLM; else gated FiLM.
__global__ void k_film(float* h, const float* scale, const float* shift, const float* g,
                       int64_t mstride, int64_t c, int64_t hw, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    const int64_t bc = i / hw, bi = bc / c, ci = bc % c, m = bi * mstride + ci;
    const float v = h[i];
    if (g) {
      const float s1 = 1.0f + scale[m], sh = shift[m];
      h[i] = v + sigm(g[m]) * ((v * s1 + sh) - v);
    } else {
      h[i] = v * (1.0f + scale[m]) + shift[m];
    }
  }
}
__global__ void k_concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb,
                                  int64_t hw, float* y, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    const int64_t p = i % hw, c = (i / hw) % (ca + cb), bi = i / (hw * (ca + cb));
    y[i] = c < ca ? a[(bi * ca + c) * hw + p] : bsrc[(bi * cb + c - ca) * hw + p];
  }
}
__global__ void k_concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm,
                                   int64_t hw, float* y, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    const int64_t p = i % hw, c = (i / hw) % (ca + cm), bi = i / (hw * (ca + cm));
    y[i] = c < ca ? a[(bi * ca + c) * hw + p] : m[bi * cm + c - ca];
  }
}
__global__ void k_dual_attention(float* h, const float* ac, const float* as, int64_t hw,
                                 int64_t total) {
  DUET_GRID_STRIDE(i, total) { h[i] = h[i] * (ac[i / hw] * as[i]); }
}
__global__ void k_fuse(const float* eps_s, const float* hp_s, const float* eps_d,
                       const float* alpha, int64_t per, float* eps, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    const float a = alpha[i / per];
    eps[i] = ((eps_s[i] - hp_s[i]) + a * hp_s[i]) + (1.0f - a) * eps_d[i];
  }
}
__global__ void k_avg_pool(const float* x, int64_t hw, float* y, int64_t rows) {
  DUET_GRID_STRIDE(r, rows) {
    double s = 0;
    for (int64_t p = 0; p < hw; ++p) s += x[r * hw + p];
    y[r] = static_cast<float>(s / static_cast<double>(hw));
  }
}
__global__ void k_timestep(const float* t, int64_t dim, double max_period, float* y,
                           int64_t total) {
  const int64_t half = dim / 2;
  DUET_GRID_STRIDE(i, total) {  // total = B * half
    const int64_t bi = i / half, k = i % half;
    const double f = exp(-log(max_period) * static_cast<double>(k) / static_cast<double>(half));
    const double arg = static_cast<double>(t[bi]) * f;
    y[bi * dim + k] = static_cast<float>(cos(arg));
    y[bi * dim + half + k] = static_cast<float>(sin(arg));
  }
}
__global__ void k_embed(const int64_t* ids, const float* tok, const float* pos, int64_t l,
                        int64_t d, float* x, int64_t total) {
  DUET_GRID_STRIDE(i, total) {
    const int64_t r = i / d, j = i % d;
    x[i] = tok[ids[r] * d + j] + pos[(r % l) * d + j];
  }
}
__global__ void k_masked_mean(const float* e, const uint8_t* m, int64_t l, int64_t d, float* p,
                              int64_t total) {
  DUET_GRID_STRIDE(i, total) {  // total = B * D
    const int64_t bi = i / d, j = i % d;
    double acc = 0, cnt = 0;
    for (int64_t t = 0; t < l; ++t) {
      if (!m[bi * l + t]) continue;
      cnt += 1;
      acc += e[(bi * l + t) * d + j];
    }
    p[i] = static_cast<float>(acc / cnt);
  }
}

int grid(int64_t n) { return grid_for(n, kThreads, kMaxBlocks); }

}  // namespace

void launch_add(float* x, const float* y, int64_t outer, int64_t n, cudaStream_t st) {
  if (outer * n > 0) k_add<<<grid(outer * n), kThreads, 0, st>>>(x, y, outer, n);
}
void launch_add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b,
                           int64_t n, int64_t d, cudaStream_t st) {
  const int64_t total = b * n * d;
  if (total > 0) k_add_gated<<<grid(total), kThreads, 0, st>>>(x, y, g, gstride, n, d, total);
}
void launch_silu(const float* x, float* y, int64_t n, cudaStream_t st) {
  if (n > 0) k_silu<<<grid(n), kThreads, 0, st>>>(x, y, n);
}
void launch_modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
                     const float* scale, int64_t mod_stride, float* y, cudaStream_t st) {
  const int64_t total = b * n * d;
  if (total > 0)
    k_modulate<<<grid(total), kThreads, 0, st>>>(x, shift, scale, mod_stride, n, d, y, total);
}
void launch_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                 int64_t b, int64_t c, int64_t hw, cudaStream_t st) {
  const int64_t total = b * c * hw;
  if (total > 0)
    k_film<<<grid(total), kThreads, 0, st>>>(h, scale, shift, g, mstride, c, hw, total);
}
void launch_concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb,
                            int64_t batch, int64_t hw, float* y, cudaStream_t st) {
  const int64_t total = batch * (ca + cb) * hw;
  if (total > 0) k_concat_channels<<<grid(total), kThreads, 0, st>>>(a, ca, bsrc, cb, hw, y, total);
}
void launch_concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                             int64_t hw, float* y, cudaStream_t st) {
  const int64_t total = batch * (ca + cm) * hw;
  if (total > 0) k_concat_broadcast<<<grid(total), kThreads, 0, st>>>(a, ca, m, cm, hw, y, total);
}
void launch_dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c,
                           int64_t hw, cudaStream_t st) {
  const int64_t total = b * c * hw;
  if (total > 0) k_dual_attention<<<grid(total), kThreads, 0, st>>>(h, ac, as, hw, total);
}
void launch_fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha,
                 int64_t b, int64_t per, float* eps, cudaStream_t st) {
  const int64_t total = b * per;
  if (total > 0)
    k_fuse<<<grid(total), kThreads, 0, st>>>(eps_s, hp_s, eps_d, alpha, per, eps, total);
}
void launch_global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw, float* y,
                            cudaStream_t st) {
  if (b * c > 0) k_avg_pool<<<grid(b * c), kThreads, 0, st>>>(x, hw, y, b * c);
}
void launch_timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period, float* y,
                              cudaStream_t st) {
  const int64_t total = b * (dim / 2);
  if (total > 0) k_timestep<<<grid(total), kThreads, 0, st>>>(t, dim, max_period, y, total);
}
void launch_embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b,
                         int64_t l, int64_t d, float* x, cudaStream_t st) {
  const int64_t total = b * l * d;
  if (total > 0) k_embed<<<grid(total), kThreads, 0, st>>>(ids, tok, pos, l, d, x, total);
}
void launch_masked_mean(const float* e, const uint8_t* mask, int64_t b, int64_t l, int64_t d,
                        float* p, cudaStream_t st) {
  if (b * d > 0) k_masked_mean<<<grid(b * d), kThreads, 0, st>>>(e, mask, l, d, p, b * d);
}

}  // namespace duet::cuda
