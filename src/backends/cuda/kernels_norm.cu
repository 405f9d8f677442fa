// LayerNorm (+ adaLN modulate) and GroupNorm (+ SiLU) with warp-shuffle reductions. LayerNorm:
// one warp per row for D <= 1024 (8 rows per 256-thread block), one block per row beyond
// (cuda_logic::norm_warp_per_row). GroupNorm: one block per (batch, group). Statistics are two
// passes (mean, then biased variance) accumulated in double like ops::layer_norm, so the CUDA
// norms agree with the reference to rounding (duet_backend_ops bound 1e-12).
#include <cuda_runtime.h>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_logic.h"

namespace duet::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the threads of a block (blockDim.x a multiple of 32, <= 1024); every thread gets it.
__device__ double block_sum(double v) {
  __shared__ double part[32];
  __shared__ double total;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // part / total may still be read from a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double s = lane < static_cast<int>(blockDim.x >> 5) ? part[lane] : 0.0;
    s = warp_sum(s);
    if (lane == 0) total = s;
  }
  __syncthreads();
  return total;
}

// Mean and rstd of row x [d] over `lanes` threads (index `me`); kWarp: the lanes are one warp.
template <bool kWarp>
__device__ void row_stats(const float* x, int64_t d, float eps, int me, int lanes, float* mean,
                          float* rstd) {
  double s = 0;
  for (int64_t j = me; j < d; j += lanes) s += x[j];
  s = kWarp ? warp_sum(s) : block_sum(s);
  const double mu = s / static_cast<double>(d);
  double v = 0;
  for (int64_t j = me; j < d; j += lanes) {
    const double t = x[j] - mu;
    v += t * t;
  }
  v = kWarp ? warp_sum(v) : block_sum(v);
  *mean = static_cast<float>(mu);
  *rstd = static_cast<float>(1.0 / sqrt(v / static_cast<double>(d) + static_cast<double>(eps)));
}

// Rows [B*N, D]; shift/scale set: adaLN modulate (row r of batch r / n), else affine gamma/beta
// (each optional).
template <bool kWarp>
__global__ void k_layer_norm(const float* x, int64_t rows, int64_t d, const float* gamma,
                             const float* beta, const float* shift, const float* scale, int64_t n,
                             int64_t mod_stride, float eps, float* y) {
  const int lanes = kWarp ? 32 : blockDim.x;
  const int me = kWarp ? (threadIdx.x & 31) : threadIdx.x;
  const int64_t r = kWarp ? blockIdx.x * static_cast<int64_t>(blockDim.x >> 5) + (threadIdx.x >> 5)
                          : static_cast<int64_t>(blockIdx.x);
  if (kWarp && r >= rows) return;  // whole warps leave together
  const float* xr = x + r * d;     // [D]
  float* yr = y + r * d;           // [D]
  float mu, rs;
  row_stats<kWarp>(xr, d, eps, me, lanes, &mu, &rs);
  if (shift) {
    const float* sh = shift + (r / n) * mod_stride;  // [D]
    const float* sc = scale + (r / n) * mod_stride;  // [D]
    for (int64_t j = me; j < d; j += lanes) {
      const float ln = (xr[j] - mu) * rs;
      yr[j] = ln * (1.0f + sc[j]) + sh[j];
    }
  } else {
    for (int64_t j = me; j < d; j += lanes) {
      float v = (xr[j] - mu) * rs;
      if (gamma) v *= gamma[j];
      if (beta) v += beta[j];
      yr[j] = v;
    }
  }
}

__global__ void k_group_norm(const float* x, int64_t c, int64_t hw, int64_t groups,
                             const float* gamma, const float* beta, float eps, bool silu,
                             float* y) {
  const int64_t bg = blockIdx.x, bi = bg / groups, g = bg % groups, cg = c / groups;
  const int64_t base = (bi * c + g * cg) * hw, len = cg * hw;
  float mu, rs;
  row_stats<false>(x + base, len, eps, threadIdx.x, blockDim.x, &mu, &rs);
  for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
    const int64_t ch = g * cg + i / hw;
    float v = (x[base + i] - mu) * rs * gamma[ch] + beta[ch];
    if (silu) v = v / (1.0f + expf(-v));
    y[base + i] = v;
  }
}

void layer_norm_any(const float* x, int64_t rows, int64_t d, const float* gamma, const float* beta,
                    const float* shift, const float* scale, int64_t n, int64_t mod_stride,
                    float eps, float* y, cudaStream_t st) {
  if (rows <= 0 || d <= 0) return;
  if (cuda_logic::norm_warp_per_row(d)) {
    const int64_t per_block = kThreads / 32;
    const int blocks = static_cast<int>(cuda_logic::ceil_div(rows, per_block));
    k_layer_norm<true>
        <<<blocks, kThreads, 0, st>>>(x, rows, d, gamma, beta, shift, scale, n, mod_stride, eps, y);
  } else {
    k_layer_norm<false><<<static_cast<unsigned>(rows), kThreads, 0, st>>>(
        x, rows, d, gamma, beta, shift, scale, n, mod_stride, eps, y);
  }
}

}  // namespace

void launch_layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                       float eps, float* y, cudaStream_t st) {
  layer_norm_any(x, m, d, gamma, beta, nullptr, nullptr, 1, 0, eps, y, st);
}
void launch_layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                                const float* shift, const float* scale, int64_t mod_stride,
                                float* y, cudaStream_t st) {
  layer_norm_any(x, b * n, d, nullptr, nullptr, shift, scale, n, mod_stride, eps, y, st);
}
void launch_group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                       const float* gamma, const float* beta, float eps, bool silu, float* y,
                       cudaStream_t st) {
  if (b * groups <= 0 || hw <= 0) return;
  k_group_norm<<<static_cast<unsigned>(b * groups), kThreads, 0, st>>>(x, c, hw, groups, gamma,
                                                                       beta, eps, silu, y);
}

}  // namespace duet::cuda
