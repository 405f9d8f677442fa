// Flash-style multi-head attention in fp32: a block per (64-row query tile, batch x head, split),
// 256 threads = 64 rows x 4 threads. K and V tiles of 128 rows are staged one after the other in
// the same padded shared buffer (row stride head_dim + 1: the 4 threads of a row read 4 different
// rows' column e from 4 different banks); scores live in a [64, 129] shared tile. The online
// softmax (cuda_logic::softmax_advance) keeps a running max and sum per row in registers and
// rescales the output accumulator (head_dim / 4 floats per thread) when the max grows. Key mask
// bytes and keys past the end score -inf. A row whose keys are all masked gives NaN, as the
// reference (and torch) does.
//
// Split-KV: when batch x heads x query tiles under-fill the SMs, cuda_logic::split_kv_heuristic
// picks S; split i covers whole KV tiles [split_range(i)), writes its unnormalised output and
// (max, sum) to scratch, and k_combine merges the S partials (cuda_logic::softmax_merge).
// Head dims 1..128 take the tiled kernel (buckets 32 / 64 / 128, zero-padded); larger heads the
// naive kernel (one thread per query row, output accumulated in place).
#include <cuda_runtime.h>

#include <mutex>

#include "backends/cuda/cuda_kernels.h"
#include "backends/cuda/cuda_logic.h"

namespace duet::cuda {
namespace {

using namespace cuda_logic;

struct Geometry {
  const float *q, *k, *v;
  const uint8_t* mask;
  float* out;
  int64_t ldq, ldk, ldv, ldo, batch, heads, nq, nk, dh;
  float scale;
  int splits;
  float* part_o;   // [splits, B*H*nq, DH] (splits > 1)
  float* part_ml;  // [splits, B*H*nq, 2]
};

template <int DH>
__global__ void __launch_bounds__(kAttnThreads) k_flash(Geometry g) {
  extern __shared__ float smem[];
  constexpr int S = DH + 1;            // padded row stride of Q and K/V tiles
  constexpr int SS = kAttnKvTile + 1;  // padded row stride of the score tile
  float* qs = smem;                    // [64, S]
  float* kv = qs + kAttnQTile * S;     // [128, S]
  float* sc = kv + kAttnKvTile * S;    // [64, SS]
  const int t = threadIdx.x, row = t / kAttnThreadsPerRow, sub = t % kAttnThreadsPerRow;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kAttnQTile;
  const int64_t bh = blockIdx.y, b = bh / g.heads, h = bh % g.heads, col = h * g.dh;
  int64_t kbeg, kend;
  split_range(g.nk, g.splits, blockIdx.z, &kbeg, &kend);

  for (int i = t; i < kAttnQTile * DH; i += kAttnThreads) {  // Q tile, pre-scaled
    const int r = i / DH, e = i % DH;
    const int64_t qr = q0 + r;
    qs[r * S + e] =
        (qr < g.nq && e < g.dh) ? g.q[(b * g.nq + qr) * g.ldq + col + e] * g.scale : 0.f;
  }
  constexpr int kPer = kAttnKvTile / kAttnThreadsPerRow;  // scores per thread per tile (32)
  constexpr int kOut = DH / kAttnThreadsPerRow;           // output columns per thread
  float acc[kOut];
#pragma unroll
  for (int i = 0; i < kOut; ++i) acc[i] = 0.f;
  SoftmaxState st = softmax_init();

  for (int64_t k0 = kbeg; k0 < kend; k0 += kAttnKvTile) {
    __syncthreads();  // the previous tile's V reads are done
    for (int i = t; i < kAttnKvTile * DH; i += kAttnThreads) {
      const int j = i / DH, e = i % DH;
      const int64_t kr = k0 + j;
      kv[j * S + e] = (kr < kend && e < g.dh) ? g.k[(b * g.nk + kr) * g.ldk + col + e] : 0.f;
    }
    __syncthreads();
    float tmax = -INFINITY;
    for (int u = 0; u < kPer; ++u) {
      const int j = sub + kAttnThreadsPerRow * u;
      const int64_t kr = k0 + j;
      float s = -INFINITY;
      if (kr < kend && !(g.mask && !g.mask[b * g.nk + kr])) {
        s = 0.f;
#pragma unroll 8
        for (int e = 0; e < DH; ++e) s += qs[row * S + e] * kv[j * S + e];
      }
      sc[row * SS + j] = s;
      tmax = fmaxf(tmax, s);
    }
    for (int o = 1; o < kAttnThreadsPerRow; o <<= 1)
      tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, o));
    float rescale;
    const float m = softmax_advance(&st, tmax, &rescale);
#pragma unroll
    for (int i = 0; i < kOut; ++i) acc[i] *= rescale;
    float lsum = 0.f;
    for (int u = 0; u < kPer; ++u) {
      const int j = sub + kAttnThreadsPerRow * u;
      const float p = exp_diff(sc[row * SS + j], m);
      sc[row * SS + j] = p;
      lsum += p;
    }
    for (int o = 1; o < kAttnThreadsPerRow; o <<= 1) lsum += __shfl_xor_sync(0xffffffffu, lsum, o);
    st.l += lsum;
    __syncthreads();  // scores written, K reads done: stage V
    for (int i = t; i < kAttnKvTile * DH; i += kAttnThreads) {
      const int j = i / DH, e = i % DH;
      const int64_t kr = k0 + j;
      kv[j * S + e] = (kr < kend && e < g.dh) ? g.v[(b * g.nk + kr) * g.ldv + col + e] : 0.f;
    }
    __syncthreads();
    for (int j = 0; j < kAttnKvTile; ++j) {
      const float p = sc[row * SS + j];
#pragma unroll
      for (int i = 0; i < kOut; ++i) acc[i] += p * kv[j * S + sub + kAttnThreadsPerRow * i];
    }
  }

  const int64_t qr = q0 + row;
  if (qr >= g.nq) return;
  if (g.splits == 1) {
    float* o = g.out + (b * g.nq + qr) * g.ldo + col;  // [dh]
#pragma unroll
    for (int i = 0; i < kOut; ++i) {
      const int e = sub + kAttnThreadsPerRow * i;
      if (e < g.dh) o[e] = acc[i] / st.l;
    }
    return;
  }
  const int64_t rows = g.batch * g.heads * g.nq, me = blockIdx.z * rows + bh * g.nq + qr;
#pragma unroll
  for (int i = 0; i < kOut; ++i) g.part_o[me * DH + sub + kAttnThreadsPerRow * i] = acc[i];
  if (sub == 0) {
    g.part_ml[me * 2] = st.m;
    g.part_ml[me * 2 + 1] = st.l;
  }
}

// Merges the split partials: one thread per (row of B*H*nq, output column).
__global__ void k_combine(Geometry g, int dhb) {
  const int64_t rows = g.batch * g.heads * g.nq;
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * g.dh) return;
  const int64_t r = i / g.dh, e = i % g.dh;
  SoftmaxState st = softmax_init();
  float o = 0.f;
  for (int s = 0; s < g.splits; ++s) {
    const int64_t me = s * rows + r;
    const SoftmaxState p{g.part_ml[me * 2], g.part_ml[me * 2 + 1]};
    float fa, fb;
    st = softmax_merge(st, p, &fa, &fb);
    o = o * fa + g.part_o[me * dhb + e] * fb;
  }
  const int64_t bh = r / g.nq, qr = r % g.nq, b = bh / g.heads, h = bh % g.heads;
  g.out[(b * g.nq + qr) * g.ldo + h * g.dh + e] = o / st.l;
}

// Any head dim: one thread per (batch x head, query row); output accumulated in place.
__global__ void k_naive(Geometry g) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= g.batch * g.heads * g.nq) return;
  const int64_t qr = i % g.nq, bh = i / g.nq, b = bh / g.heads, col = (bh % g.heads) * g.dh;
  const float* q = g.q + (b * g.nq + qr) * g.ldq + col;
  float* o = g.out + (b * g.nq + qr) * g.ldo + col;
  auto score = [&](int64_t j) {
    if (g.mask && !g.mask[b * g.nk + j]) return -INFINITY;
    const float* k = g.k + (b * g.nk + j) * g.ldk + col;
    float s = 0.f;
    for (int64_t e = 0; e < g.dh; ++e) s += q[e] * k[e];
    return s * g.scale;
  };
  float m = -INFINITY, l = 0.f;
  for (int64_t j = 0; j < g.nk; ++j) m = fmaxf(m, score(j));
  for (int64_t j = 0; j < g.nk; ++j) l += exp_diff(score(j), m);
  for (int64_t e = 0; e < g.dh; ++e) o[e] = 0.f;
  for (int64_t j = 0; j < g.nk; ++j) {
    const float p = exp_diff(score(j), m) / l;
    const float* v = g.v + (b * g.nk + j) * g.ldv + col;
    for (int64_t e = 0; e < g.dh; ++e) o[e] += p * v[e];
  }
  if (l == 0.f)
    for (int64_t e = 0; e < g.dh; ++e) o[e] = NAN;
}

template <int DH>
void launch_flash(const Geometry& g, cudaStream_t st) {
  const int smem = static_cast<int>(attn_smem_bytes(DH));
  static std::once_flag once;  // the opt-in above 48 KiB, once per instantiation
  std::call_once(once, [&] {
    cudaFuncSetAttribute(k_flash<DH>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  });
  const dim3 grid(static_cast<unsigned>(ceil_div(g.nq, kAttnQTile)),
                  static_cast<unsigned>(g.batch * g.heads), static_cast<unsigned>(g.splits));
  k_flash<DH><<<grid, kAttnThreads, smem, st>>>(g);
  if (g.splits > 1) {
    const int64_t n = g.batch * g.heads * g.nq * g.dh;
    k_combine<<<static_cast<unsigned>(ceil_div(n, 256)), 256, 0, st>>>(g, DH);
  }
}

}  // namespace

int attention_splits(const ops::AttentionArgs& a, int sms) {
  if (attn_head_bucket(a.head_dim) == 0) return 1;
  const int64_t blocks = ceil_div(a.nq, kAttnQTile) * a.batch * a.heads;
  return split_kv_heuristic(blocks, sms, ceil_div(a.nk, kAttnKvTile), 128);
}

int64_t attention_scratch_floats(const ops::AttentionArgs& a, int splits) {
  if (splits <= 1) return 0;
  const int64_t dhb = attn_head_bucket(a.head_dim);
  return splits * a.batch * a.heads * a.nq * (dhb + 2);
}

void launch_attention(const ops::AttentionArgs& a, int splits, float* scratch, cudaStream_t st) {
  if (a.batch * a.heads * a.nq <= 0 || a.head_dim <= 0) return;
  Geometry g{a.q,     a.k,     a.v,    a.key_mask, a.out,
             a.ldq,   a.ldk,   a.ldv,  a.ldo,      a.batch,
             a.heads, a.nq,    a.nk,   a.head_dim, 1.0f / sqrtf(static_cast<float>(a.head_dim)),
             splits,  nullptr, nullptr};
  const int bucket = attn_head_bucket(a.head_dim);
  if (bucket == 0) {
    const int64_t n = a.batch * a.heads * a.nq;
    k_naive<<<static_cast<unsigned>(ceil_div(n, 128)), 128, 0, st>>>(g);
    return;
  }
  if (splits > 1) {
    const int64_t rows = a.batch * a.heads * a.nq;
    g.part_o = scratch;
    g.part_ml = scratch + splits * rows * bucket;
  }
  if (bucket == 32) launch_flash<32>(g, st);
  if (bucket == 64) launch_flash<64>(g, st);
  if (bucket == 128) launch_flash<128>(g, st);
}

}  // namespace duet::cuda
