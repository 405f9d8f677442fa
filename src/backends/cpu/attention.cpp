// Tiled multi-head attention with an online (streaming) softmax, FlashAttention-style:
// each task owns a block of query rows of one (batch, head) and walks the keys in tiles,
// keeping the running max m, the running sum l and the un-normalised output in registers/L1.
// Nothing is allocated: tiles live on the stack (head_dim <= kMaxHeadDim).
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "backends/cpu/cpu_kernels.h"

namespace duet::cpu {

namespace {
constexpr int64_t kQ = 16;  // query rows per task
constexpr int64_t kK = 64;  // keys per tile
constexpr int64_t kMaxHeadDim = 256;
}  // namespace

void attention(const ops::AttentionArgs& a) {
  const int64_t dh = a.head_dim;
  if (dh > kMaxHeadDim) {  // wider heads: the reference kernel (correct, slower)
    ops::attention(a);
    return;
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dh)));
  const int64_t qblocks = (a.nq + kQ - 1) / kQ;
  const int64_t tasks = a.batch * a.heads * qblocks;
#pragma omp parallel for schedule(static)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / (a.heads * qblocks);
    const int64_t h = (task / qblocks) % a.heads;
    const int64_t q0 = (task % qblocks) * kQ;
    const int64_t nq = std::min(kQ, a.nq - q0);
    const int64_t col = h * dh;
    alignas(64) float q[kQ][kMaxHeadDim];
    alignas(64) float acc[kQ][kMaxHeadDim];
    alignas(64) float s[kQ][kK];
    float mrow[kQ], lrow[kQ];
    for (int64_t i = 0; i < nq; ++i) {
      const float* src = a.q + (b * a.nq + q0 + i) * a.ldq + col;
#pragma omp simd
      for (int64_t e = 0; e < dh; ++e) {
        q[i][e] = src[e] * scale;
        acc[i][e] = 0.f;
      }
      mrow[i] = -INFINITY;
      lrow[i] = 0.f;
    }
    for (int64_t k0 = 0; k0 < a.nk; k0 += kK) {
      const int64_t nk = std::min(kK, a.nk - k0);
      // S = Q K^T for this tile
      for (int64_t j = 0; j < nk; ++j) {
        const int64_t key = k0 + j;
        const bool masked = a.key_mask && !a.key_mask[b * a.nk + key];
        const float* kr = a.k + (b * a.nk + key) * a.ldk + col;
        for (int64_t i = 0; i < nq; ++i) {
          if (masked) {
            s[i][j] = -INFINITY;
            continue;
          }
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t e = 0; e < dh; ++e) dot += q[i][e] * kr[e];
          s[i][j] = dot;
        }
      }
      // online softmax update
      for (int64_t i = 0; i < nq; ++i) {
        float mx = mrow[i];
        for (int64_t j = 0; j < nk; ++j) mx = s[i][j] > mx ? s[i][j] : mx;
        if (mx == -INFINITY) continue;  // every key so far masked
        const float corr = std::exp(mrow[i] - mx);
        float sum = 0.f;
        for (int64_t j = 0; j < nk; ++j) {
          s[i][j] = std::exp(s[i][j] - mx);
          sum += s[i][j];
        }
        lrow[i] = lrow[i] * corr + sum;
        mrow[i] = mx;
#pragma omp simd
        for (int64_t e = 0; e < dh; ++e) acc[i][e] *= corr;
      }
      // acc += P V
      for (int64_t j = 0; j < nk; ++j) {
        const float* vr = a.v + (b * a.nk + k0 + j) * a.ldv + col;
        for (int64_t i = 0; i < nq; ++i) {
          const float pj = s[i][j];
          if (pj == 0.f || mrow[i] == -INFINITY) continue;
#pragma omp simd
          for (int64_t e = 0; e < dh; ++e) acc[i][e] += pj * vr[e];
        }
      }
    }
    for (int64_t i = 0; i < nq; ++i) {
      float* dst = a.out + (b * a.nq + q0 + i) * a.ldo + col;
      const float inv = 1.f / lrow[i];  // all keys masked: 1/0 -> NaN output as torch
#pragma omp simd
      for (int64_t e = 0; e < dh; ++e) dst[e] = acc[i][e] * inv;
    }
  }
}

}  // namespace duet::cpu
