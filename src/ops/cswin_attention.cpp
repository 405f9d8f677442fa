// Reference CSWin stripe attention with LePE (ops.h, cswin_attention.py): window by window, the
// formula as written, double accumulation (scores, softmax, sums and the LePE taps).
#include <cmath>
#include <vector>

#include "ops/ops.h"

namespace duet::ops {

void cswin_attention(const CswinAttentionArgs& a) {
  const int64_t d = a.head_dim, N = a.gh * a.gw, r = a.kernel / 2;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  std::vector<int64_t> toks;
  std::vector<double> p;
  for (int which = 0; which < 2; ++which) {
    const CswinBranch br = cswin_branch(which, a.heads, d, a.gh, a.gw, a.stripe);
    for (int64_t b = 0; b < a.batch; ++b) {
      for (int64_t s = 0; s < br.windows; ++s) {
        toks.clear();
        for (int64_t t = 0; t < br.len; ++t) {
          const int64_t n = cswin_token(br, a.gh, a.gw, a.stripe, s, t);
          if (n >= 0) toks.push_back(n);
        }
        const size_t L = toks.size();
        p.resize(L);
        for (int64_t h = br.head0; h < br.head0 + br.nheads; ++h) {
          const int64_t col = h * d;
          for (const int64_t n : toks) {
            const float* q = a.q + (b * N + n) * a.ldq + col;
            double mx = -INFINITY;
            for (size_t j = 0; j < L; ++j) {
              const float* k = a.k + (b * N + toks[j]) * a.ldk + col;
              double dot = 0;
              for (int64_t e = 0; e < d; ++e) dot += static_cast<double>(q[e]) * k[e];
              p[j] = dot * scale;
              mx = std::max(mx, p[j]);
            }
            double sum = 0;
            for (size_t j = 0; j < L; ++j) sum += (p[j] = std::exp(p[j] - mx));
            const int64_t row = n / a.gw, cl = n % a.gw;
            float* out = a.out + (b * N + n) * a.ldo + col;
            for (int64_t f = 0; f < d; ++f) {
              double o = 0;
              for (size_t j = 0; j < L; ++j) o += p[j] * a.v[(b * N + toks[j]) * a.ldv + col + f];
              double loc = a.lepe_b[col + f];
              for (int64_t di = -r; di <= r; ++di)
                for (int64_t dj = -r; dj <= r; ++dj) {
                  if (!cswin_same_window(br, a.gh, a.gw, a.stripe, row, cl, di, dj)) continue;
                  const int64_t m = (row + di) * a.gw + cl + dj;
                  loc += static_cast<double>(
                             a.lepe_w[((col + f) * a.kernel + di + r) * a.kernel + dj + r]) *
                         a.v[(b * N + m) * a.ldv + col + f];
                }
              out[f] = static_cast<float>(o / sum + loc);
            }
          }
        }
      }
    }
  }
}

}  // namespace duet::ops
