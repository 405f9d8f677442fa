// Tiled multi-head attention with an online (streaming) softmax, FlashAttention-style, in Google
// Highway SIMD with runtime dispatch (SSE4 / AVX2 / AVX-512 chosen at run time; the binary stays
// portable). Each OpenMP task owns kQ query rows of one (batch, head) and walks the keys in tiles
// of kK: the tile's Kᵀ and V are packed into L1-sized buffers, S = Q·Kᵀ and acc += P·V run as
// register-blocked micro-kernels (up to 4 rows × 4 vectors of accumulators), and the running max
// m / sum l rescale acc as each tile arrives. No N×N matrix, nothing allocated: the tiles live on
// the stack (head_dim <= kMaxHeadDim; wider heads use the reference kernel).
//
// Masked keys get score −inf, hence weight exactly 0 (Exp(−inf) = 0); a row whose keys are all
// masked ends with l = 0 and a NaN output, as torch's softmax over all −inf gives.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "backends/cpu/attention.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// foreach_target re-includes this file once per target; the includes below follow it.
#include <hwy/contrib/math/math-inl.h>
#include <hwy/highway.h>
#include <algorithm>
#include <cmath>

#include "backends/cpu/cpu_kernels.h"

#ifndef DUET_ATTENTION_ONCE
#define DUET_ATTENTION_ONCE
namespace duet::cpu {
constexpr int64_t kAttentionMaxHeadDim = 256;  // wider heads: the reference kernel
}  // namespace duet::cpu
#endif

HWY_BEFORE_NAMESPACE();
namespace duet::cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kQ = 64;  // query rows per task
constexpr int64_t kK = 64;  // keys per tile (a multiple of 4 vectors for vectors up to 16 lanes)
constexpr int64_t kMaxHeadDim = kAttentionMaxHeadDim;
constexpr int64_t kMaxRowBlock = 4;  // rows per micro-kernel
constexpr int64_t kMaxVecBlock = 4;  // vectors per micro-kernel

using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

struct Tile {
  alignas(64) float q[kQ][kMaxHeadDim];    // scaled queries        [kQ, dh]
  alignas(64) float acc[kQ][kMaxHeadDim];  // un-normalised output  [kQ, dhp]
  alignas(64) float kt[kMaxHeadDim][kK];   // packed Kᵀ of the tile [dh, kK]
  alignas(64) float v[kK][kMaxHeadDim];    // packed V of the tile  [kK, dhp] (zero padded)
  alignas(64) float s[kQ][kK];             // scores, then weights  [kQ, kK]
  float m[kQ], l[kQ];                      // running max and sum per row
};

// s[i0 + r][j0 + c·N ..] = Σ_e q[i0 + r][e] · kt[e][j0 + c·N ..] for r < R, c < C.
template <int R, int C>
HWY_INLINE void scores_block(Tile& t, int64_t i0, int64_t j0, int64_t dh) {
  const DF d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  VF sum[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) sum[r][c] = hn::Zero(d);
  for (int64_t e = 0; e < dh; ++e) {
    VF kv[C];
    for (int c = 0; c < C; ++c) kv[c] = hn::Load(d, &t.kt[e][j0 + c * n]);
    for (int r = 0; r < R; ++r) {
      const VF qe = hn::Set(d, t.q[i0 + r][e]);
      for (int c = 0; c < C; ++c) sum[r][c] = hn::MulAdd(qe, kv[c], sum[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) hn::Store(sum[r][c], d, &t.s[i0 + r][j0 + c * n]);
}

// acc[i0 + r][e0 + c·N ..] += Σ_{j < nk} s[i0 + r][j] · v[j][e0 + c·N ..].
template <int R, int C>
HWY_INLINE void weighted_values_block(Tile& t, int64_t i0, int64_t e0, int64_t nk) {
  const DF d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  VF sum[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) sum[r][c] = hn::Load(d, &t.acc[i0 + r][e0 + c * n]);
  for (int64_t j = 0; j < nk; ++j) {
    VF vv[C];
    for (int c = 0; c < C; ++c) vv[c] = hn::Load(d, &t.v[j][e0 + c * n]);
    for (int r = 0; r < R; ++r) {
      const VF p = hn::Set(d, t.s[i0 + r][j]);
      for (int c = 0; c < C; ++c) sum[r][c] = hn::MulAdd(p, vv[c], sum[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) hn::Store(sum[r][c], d, &t.acc[i0 + r][e0 + c * n]);
}

// Runs BLOCK<R, C> over rows [0, nq) × vectors [0, nvec) in blocks of at most 4 × 4.
template <template <int, int> class Block, typename... Args>
HWY_INLINE void for_blocks(int64_t nq, int64_t nvec, Args... args) {
  const int64_t n = static_cast<int64_t>(hn::Lanes(DF()));
  for (int64_t i0 = 0; i0 < nq; i0 += kMaxRowBlock) {
    const int64_t rows = std::min(kMaxRowBlock, nq - i0);
    for (int64_t c0 = 0; c0 < nvec; c0 += kMaxVecBlock) {
      const int64_t cols = std::min(kMaxVecBlock, nvec - c0);
      const int key = static_cast<int>(rows * 8 + cols);
      switch (key) {
#define DUET_ATTN_CASE(R, C)              \
  case R * 8 + C:                         \
    Block<R, C>::run(i0, c0* n, args...); \
    break;
        DUET_ATTN_CASE(1, 1)
        DUET_ATTN_CASE(1, 2)
        DUET_ATTN_CASE(1, 3)
        DUET_ATTN_CASE(1, 4)
        DUET_ATTN_CASE(2, 1)
        DUET_ATTN_CASE(2, 2)
        DUET_ATTN_CASE(2, 3)
        DUET_ATTN_CASE(2, 4)
        DUET_ATTN_CASE(3, 1)
        DUET_ATTN_CASE(3, 2)
        DUET_ATTN_CASE(3, 3)
        DUET_ATTN_CASE(3, 4)
        DUET_ATTN_CASE(4, 1)
        DUET_ATTN_CASE(4, 2)
        DUET_ATTN_CASE(4, 3)
        DUET_ATTN_CASE(4, 4)
#undef DUET_ATTN_CASE
        default:
          break;
      }
    }
  }
}

template <int R, int C>
struct ScoresBlock {
  static HWY_INLINE void run(int64_t i0, int64_t j0, Tile* t, int64_t dh) {
    scores_block<R, C>(*t, i0, j0, dh);
  }
};
template <int R, int C>
struct WeightedValuesBlock {
  static HWY_INLINE void run(int64_t i0, int64_t e0, Tile* t, int64_t nk) {
    weighted_values_block<R, C>(*t, i0, e0, nk);
  }
};

// One task: rows [q0, q0 + nq) of (batch b, head h).
void attention_rows(const ops::AttentionArgs& a, int64_t b, int64_t h, int64_t q0, int64_t nq,
                    float scale, Tile& t) {
  const DF d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const int64_t dh = a.head_dim;
  const int64_t dhp = (dh + n - 1) / n * n;  // acc / v row length, whole vectors
  const int64_t col = h * dh;
  for (int64_t i = 0; i < nq; ++i) {
    const float* src = a.q + (b * a.nq + q0 + i) * a.ldq + col;
    for (int64_t e = 0; e < dh; ++e) t.q[i][e] = src[e] * scale;
    for (int64_t e = 0; e < dhp; ++e) t.acc[i][e] = 0.f;
    t.m[i] = -INFINITY;
    t.l[i] = 0.f;
  }
  const VF neg_inf = hn::Set(d, -INFINITY);
  for (int64_t k0 = 0; k0 < a.nk; k0 += kK) {
    const int64_t nk = std::min(kK, a.nk - k0);
    const int64_t nkp = (nk + n - 1) / n * n;  // score columns, whole vectors
    // pack Kᵀ [dh, nkp] (padding columns zero) and V [nk, dhp] (padding lanes zero)
    for (int64_t j = 0; j < nk; ++j) {
      const float* kr = a.k + (b * a.nk + k0 + j) * a.ldk + col;
      const float* vr = a.v + (b * a.nk + k0 + j) * a.ldv + col;
      for (int64_t e = 0; e < dh; ++e) t.kt[e][j] = kr[e];
      for (int64_t e = 0; e < dh; ++e) t.v[j][e] = vr[e];
      for (int64_t e = dh; e < dhp; ++e) t.v[j][e] = 0.f;
    }
    for (int64_t e = 0; e < dh; ++e)
      for (int64_t j = nk; j < nkp; ++j) t.kt[e][j] = 0.f;
    // S = Q Kᵀ
    for_blocks<ScoresBlock>(nq, nkp / n, &t, dh);
    // masked and padding keys: −inf
    for (int64_t j = 0; j < nkp; ++j) {
      const bool masked = j >= nk || (a.key_mask && !a.key_mask[b * a.nk + k0 + j]);
      if (!masked) continue;
      for (int64_t i = 0; i < nq; ++i) t.s[i][j] = -INFINITY;
    }
    // online softmax: weights P = exp(S − m_new) in place, rescale acc by exp(m_old − m_new)
    for (int64_t i = 0; i < nq; ++i) {
      VF mx = hn::Set(d, t.m[i]);
      for (int64_t j = 0; j < nkp; j += n) mx = hn::Max(mx, hn::Load(d, &t.s[i][j]));
      const float m_new = hn::GetLane(hn::MaxOfLanes(d, mx));
      if (m_new == -INFINITY) {  // every key so far masked: contribute nothing
        for (int64_t j = 0; j < nkp; j += n) hn::Store(hn::Zero(d), d, &t.s[i][j]);
        continue;
      }
      const VF mv = hn::Set(d, m_new);
      VF sum = hn::Zero(d);
      for (int64_t j = 0; j < nkp; j += n) {
        const VF sv = hn::Load(d, &t.s[i][j]);
        // −inf − m_new = −inf, Exp(−inf) = 0 (masked keys weigh exactly nothing)
        const VF p = hn::IfThenElseZero(hn::Gt(sv, neg_inf), hn::Exp(d, hn::Sub(sv, mv)));
        hn::Store(p, d, &t.s[i][j]);
        sum = hn::Add(sum, p);
      }
      const float corr = std::exp(t.m[i] - m_new);  // m_old = −inf: 0
      t.l[i] = t.l[i] * corr + hn::GetLane(hn::SumOfLanes(d, sum));
      t.m[i] = m_new;
      if (corr != 1.f) {
        const VF cv = hn::Set(d, corr);
        for (int64_t e = 0; e < dhp; e += n)
          hn::Store(hn::Mul(hn::Load(d, &t.acc[i][e]), cv), d, &t.acc[i][e]);
      }
    }
    // acc += P V
    for_blocks<WeightedValuesBlock>(nq, dhp / n, &t, nk);
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* dst = a.out + (b * a.nq + q0 + i) * a.ldo + col;
    const float inv = 1.f / t.l[i];  // all keys masked: 1/0 -> NaN output as torch
    for (int64_t e = 0; e < dh; ++e) dst[e] = t.acc[i][e] * inv;
  }
}

void AttentionTiled(const ops::AttentionArgs& a) {
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.head_dim)));
  const int64_t qblocks = (a.nq + kQ - 1) / kQ;
  const int64_t tasks = a.batch * a.heads * qblocks;
#pragma omp parallel
  {
    Tile t;  // per thread, on its stack
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t b = task / (a.heads * qblocks);
      const int64_t h = (task / qblocks) % a.heads;
      const int64_t q0 = (task % qblocks) * kQ;
      attention_rows(a, b, h, q0, std::min(kQ, a.nq - q0), scale, t);
    }
  }
}

// Lanes of this target (the tiles assume at most 16).
size_t AttentionLanes() { return hn::Lanes(DF()); }

}  // namespace HWY_NAMESPACE
}  // namespace duet::cpu
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace duet::cpu {

HWY_EXPORT(AttentionTiled);
HWY_EXPORT(AttentionLanes);

void attention(const ops::AttentionArgs& a) {
  // Wider heads or wider vectors than the tiles hold: the reference kernel (correct, slower).
  if (a.head_dim > kAttentionMaxHeadDim || HWY_DYNAMIC_DISPATCH(AttentionLanes)() > 16) {
    ops::attention(a);
    return;
  }
  HWY_DYNAMIC_DISPATCH(AttentionTiled)(a);
}

}  // namespace duet::cpu
#endif  // HWY_ONCE
