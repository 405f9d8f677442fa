// CSWin stripe attention on the GPU (ops.h CswinAttentionArgs; twin ops::cswin_attention). Never
// run on a GPU yet (no GPU was lent to the session that wrote it); duet_backend_ops and the golden
// tests check it against the reference as soon as scripts/gpu-check.sh runs on one.
// Same plan as the cpu kernel (backends/cpu/cswin_attention.cpp), with the window index maths of
// ops/cswin_layout.h compiled for host and device:
//   k_cswin_gather: one thread per (slot, column) copies q/k/v into the padded window layout
//                   (zeros for padding slots) and writes the key mask;
//   the backend's flash attention over B * windows sequences of len tokens;
//   k_cswin_scatter: one thread per (slot, column) writes o + lepe_b + the LePE taps.
#include <cuda_runtime.h>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_logic.h"

namespace duet::cuda {
namespace {

using cuda_logic::grid_for;
constexpr int kThreads = 256, kMaxBlocks = 65535;

struct Views {
  float *q, *k, *v, *o;
  uint8_t* mask;
};

__host__ __device__ Views views(const ops::CswinAttentionArgs& a, const ops::CswinBranch& br) {
  const int64_t slots = a.batch * br.windows * br.len, W = br.width;
  Views w;
  w.q = a.scratch;
  w.k = w.q + slots * W;
  w.v = w.k + slots * W;
  w.o = w.v + slots * W;
  w.mask = reinterpret_cast<uint8_t*>(w.o + slots * W);
  return w;
}

__global__ void k_cswin_gather(ops::CswinAttentionArgs a, ops::CswinBranch br) {
  const int64_t W = br.width, slots = a.batch * br.windows * br.len, N = a.gh * a.gw;
  const Views w = views(a, br);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < slots * W;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t i = idx / W, c = idx % W;
    const int64_t b = i / (br.windows * br.len), s = (i / br.len) % br.windows, t = i % br.len;
    const int64_t n = ops::cswin_token(br, a.gh, a.gw, a.stripe, s, t);
    if (c == 0) w.mask[i] = n >= 0;
    const int64_t row = b * N + n;
    w.q[idx] = n >= 0 ? a.q[row * a.ldq + br.c0 + c] : 0.f;
    w.k[idx] = n >= 0 ? a.k[row * a.ldk + br.c0 + c] : 0.f;
    w.v[idx] = n >= 0 ? a.v[row * a.ldv + br.c0 + c] : 0.f;
  }
}

__global__ void k_cswin_scatter(ops::CswinAttentionArgs a, ops::CswinBranch br) {
  const int64_t W = br.width, slots = a.batch * br.windows * br.len, N = a.gh * a.gw;
  const int64_t r = a.kernel / 2;
  const Views w = views(a, br);
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < slots * W;
       idx += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const int64_t i = idx / W, c = idx % W, ch = br.c0 + c;
    const int64_t b = i / (br.windows * br.len), s = (i / br.len) % br.windows, t = i % br.len;
    const int64_t n = ops::cswin_token(br, a.gh, a.gw, a.stripe, s, t);
    if (n < 0) continue;
    const int64_t row = n / a.gw, col = n % a.gw;
    float out = w.o[idx] + a.lepe_b[ch];
    for (int64_t di = -r; di <= r; ++di)
      for (int64_t dj = -r; dj <= r; ++dj) {
        if (!ops::cswin_same_window(br, a.gh, a.gw, a.stripe, row, col, di, dj)) continue;
        out += a.lepe_w[(ch * a.kernel + di + r) * a.kernel + dj + r] *
               a.v[(b * N + (row + di) * a.gw + col + dj) * a.ldv + ch];
      }
    a.out[(b * N + n) * a.ldo + ch] = out;
  }
}

}  // namespace

ops::AttentionArgs launch_cswin_gather(const ops::CswinAttentionArgs& a, int which,
                                       cudaStream_t st) {
  const ops::CswinBranch br = ops::cswin_branch(which, a.heads, a.head_dim, a.gh, a.gw, a.stripe);
  ops::AttentionArgs at;
  const int64_t total = a.batch * br.windows * br.len * br.width;
  if (br.nheads == 0 || total <= 0) return at;  // heads == 0: nothing to attend
  k_cswin_gather<<<grid_for(total, kThreads, kMaxBlocks), kThreads, 0, st>>>(a, br);
  const Views w = views(a, br);
  at.q = w.q;
  at.k = w.k;
  at.v = w.v;
  at.ldq = at.ldk = at.ldv = br.width;
  at.key_mask = w.mask;
  at.out = w.o;
  at.ldo = br.width;
  at.batch = a.batch * br.windows;
  at.heads = br.nheads;
  at.nq = at.nk = br.len;
  at.head_dim = a.head_dim;
  return at;
}

void launch_cswin_scatter(const ops::CswinAttentionArgs& a, int which, cudaStream_t st) {
  const ops::CswinBranch br = ops::cswin_branch(which, a.heads, a.head_dim, a.gh, a.gw, a.stripe);
  const int64_t total = a.batch * br.windows * br.len * br.width;
  if (br.nheads == 0 || total <= 0) return;
  k_cswin_scatter<<<grid_for(total, kThreads, kMaxBlocks), kThreads, 0, st>>>(a, br);
}

}  // namespace duet::cuda
