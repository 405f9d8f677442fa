// Reference SLAB linear attention (ops.h, slab_attention.py): the formula as written, double
// accumulation, no scratch use beyond the caller's contract.
#include <algorithm>
#include <vector>

#include "ops/ops.h"

namespace duet::ops {

void slab_attention(const SlabAttentionArgs& a) {
  const int64_t d = a.head_dim, N = a.gh * a.gw, r = a.kernel / 2;
  std::vector<double> kv(static_cast<size_t>(d * d)), z(static_cast<size_t>(d));
  std::vector<double> o(static_cast<size_t>(d));
  for (int64_t b = 0; b < a.batch; ++b) {
    for (int64_t h = 0; h < a.heads; ++h) {
      const int64_t col = h * d;
      std::fill(kv.begin(), kv.end(), 0.0);
      std::fill(z.begin(), z.end(), 0.0);
      for (int64_t n = 0; n < N; ++n) {
        const float* k = a.k + (b * N + n) * a.ldk + col;  // [d]
        const float* v = a.v + (b * N + n) * a.ldv + col;  // [d]
        for (int64_t e = 0; e < d; ++e) {
          const double ke = std::max(k[e], 0.f);
          z[e] += ke;
          for (int64_t f = 0; f < d; ++f) kv[e * d + f] += ke * v[f];
        }
      }
      for (int64_t e = 0; e < d * d; ++e) kv[e] /= static_cast<double>(N);
      for (int64_t e = 0; e < d; ++e) z[e] /= static_cast<double>(N);
      for (int64_t n = 0; n < N; ++n) {
        const float* q = a.q + (b * N + n) * a.ldq + col;
        double den = a.eps;
        std::fill(o.begin(), o.end(), 0.0);
        for (int64_t e = 0; e < d; ++e) {
          const double qe = std::max(q[e], 0.f);
          den += qe * z[e];
          for (int64_t f = 0; f < d; ++f) o[f] += qe * kv[e * d + f];
        }
        const int64_t i = n / a.gw, j = n % a.gw;
        float* out = a.out + (b * N + n) * a.ldo + col;
        for (int64_t f = 0; f < d; ++f) {
          double loc = a.dwc_b[f];
          for (int64_t di = -r; di <= r; ++di) {
            for (int64_t dj = -r; dj <= r; ++dj) {
              const int64_t ii = i + di, jj = j + dj;
              if (ii < 0 || ii >= a.gh || jj < 0 || jj >= a.gw) continue;
              const float* v = a.v + (b * N + ii * a.gw + jj) * a.ldv + col;
              loc +=
                  static_cast<double>(a.dwc_w[(f * a.kernel + di + r) * a.kernel + dj + r]) * v[f];
            }
          }
          out[f] = static_cast<float>(o[f] / den + loc);
        }
      }
    }
  }
}

}  // namespace duet::ops
