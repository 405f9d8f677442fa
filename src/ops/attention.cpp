// Reference multi-head attention: explicit scores, masked softmax, weighted sum (double accum).
#include <cmath>
#include <vector>

#include "ops/ops.h"

namespace duet::ops {

void attention(const AttentionArgs& a) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(a.head_dim));
  std::vector<double> s(static_cast<size_t>(a.nk));  // scores of one query row [Nk]
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t h = 0; h < a.heads; ++h) {
      const int64_t col = h * a.head_dim;
      for (int64_t i = 0; i < a.nq; ++i) {
        const float* q = a.q + (b * a.nq + i) * a.ldq + col;  // [dh]
        double mx = -INFINITY;
        for (int64_t j = 0; j < a.nk; ++j) {
          const bool masked = a.key_mask && !a.key_mask[b * a.nk + j];
          if (masked) {
            s[j] = -INFINITY;
            continue;
          }
          const float* k = a.k + (b * a.nk + j) * a.ldk + col;  // [dh]
          double dot = 0;
          for (int64_t e = 0; e < a.head_dim; ++e) dot += static_cast<double>(q[e]) * k[e];
          s[j] = dot * scale;
          mx = s[j] > mx ? s[j] : mx;
        }
        double sum = 0;
        for (int64_t j = 0; j < a.nk; ++j) {
          s[j] = std::exp(s[j] - mx);  // all-masked row: NaN, as torch
          sum += s[j];
        }
        float* o = a.out + (b * a.nq + i) * a.ldo + col;  // [dh]
        for (int64_t e = 0; e < a.head_dim; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < a.nk; ++j) {
            if (s[j] == 0.0) continue;
            acc += s[j] * a.v[(b * a.nk + j) * a.ldv + col + e];
          }
          o[e] = static_cast<float>(acc / sum);
        }
      }
    }
  }
}

}  // namespace duet::ops
