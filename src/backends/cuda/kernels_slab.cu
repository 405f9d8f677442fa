// SLAB linear attention on the GPU (ops.h SlabAttentionArgs; twin ops::slab_attention). Never run
// on a GPU yet (no GPU was lent to the session that wrote it); duet_backend_ops and the golden
// tests check it against the reference as soon as scripts/gpu-check.sh runs on one.
//   k_slab_kv: one block per (image, head); each thread owns entries of kv [d, d] and z [d] and
//              sums over the N tokens in token order (fp32), then scales by 1/N.
//   k_slab_out: one block per token row and head; the row's phi(q) and the denominator are shared
//              through shared memory; thread f computes out[f] and adds the dwc taps.
#include <cuda_runtime.h>

#include "backends/cuda/cuda_kernels.h"

namespace duet::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void k_slab_kv(ops::SlabAttentionArgs a) {
  const int64_t d = a.head_dim, N = a.gh * a.gw, per = d * d + d;
  const int64_t bh = blockIdx.x, b = bh / a.heads, col = (bh % a.heads) * d;
  float* kv = a.scratch + bh * per;
  for (int64_t idx = threadIdx.x; idx < per; idx += blockDim.x) {
    const int64_t e = idx < d * d ? idx / d : idx - d * d;
    const int64_t f = idx < d * d ? idx % d : -1;
    float s = 0.f;
    for (int64_t n = 0; n < N; ++n) {
      const float ke = fmaxf(a.k[(b * N + n) * a.ldk + col + e], 0.f);
      s += f < 0 ? ke : ke * a.v[(b * N + n) * a.ldv + col + f];
    }
    kv[idx] = s / static_cast<float>(N);
  }
}

__global__ void k_slab_out(ops::SlabAttentionArgs a) {
  extern __shared__ float sh[];  // [d] phi(q), then [1] denominator
  const int64_t d = a.head_dim, N = a.gh * a.gw, per = d * d + d, r = a.kernel / 2;
  const int64_t row = blockIdx.x, h = blockIdx.y, b = row / N, n = row % N;
  const int64_t i = n / a.gw, j = n % a.gw, col = h * d;
  const float* kv = a.scratch + (b * a.heads + h) * per;
  const float* z = kv + d * d;
  for (int64_t e = threadIdx.x; e < d; e += blockDim.x)
    sh[e] = fmaxf(a.q[row * a.ldq + col + e], 0.f);
  __syncthreads();
  if (threadIdx.x == 0) {
    float den = 0.f;
    for (int64_t e = 0; e < d; ++e) den += sh[e] * z[e];
    sh[d] = 1.f / (den + a.eps);
  }
  __syncthreads();
  for (int64_t f = threadIdx.x; f < d; f += blockDim.x) {
    float o = 0.f;
    for (int64_t e = 0; e < d; ++e) o += sh[e] * kv[e * d + f];
    float out = o * sh[d] + a.dwc_b[f];
    for (int64_t di = -r; di <= r; ++di) {
      const int64_t ii = i + di;
      if (ii < 0 || ii >= a.gh) continue;
      for (int64_t dj = -r; dj <= r; ++dj) {
        const int64_t jj = j + dj;
        if (jj < 0 || jj >= a.gw) continue;
        out += a.dwc_w[(f * a.kernel + di + r) * a.kernel + dj + r] *
               a.v[(b * N + ii * a.gw + jj) * a.ldv + col + f];
      }
    }
    a.out[row * a.ldo + col + f] = out;
  }
}

}  // namespace

void launch_slab_attention(const ops::SlabAttentionArgs& a, cudaStream_t st) {
  const int64_t bh = a.batch * a.heads, rows = a.batch * a.gh * a.gw;
  if (bh <= 0 || rows <= 0 || a.head_dim <= 0) return;
  k_slab_kv<<<static_cast<unsigned>(bh), kThreads, 0, st>>>(a);
  const dim3 grid(static_cast<unsigned>(rows), static_cast<unsigned>(a.heads));
  const int threads = a.head_dim < kThreads ? static_cast<int>(a.head_dim) : kThreads;
  const size_t shmem = static_cast<size_t>(a.head_dim + 1) * sizeof(float);
  k_slab_out<<<grid, threads, shmem, st>>>(a);
}

}  // namespace duet::cuda
