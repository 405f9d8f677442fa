// Reference spectral ops: the high-pass mask (spectral.py) and HP(x) via a naive separable DFT
// in double precision.
#include <cmath>
#include <complex>
#include <vector>

#include "ops/ops.h"

namespace duet::ops {

namespace {
// numpy.fft.fftfreq(n)[u]
double fftfreq(int64_t u, int64_t n) {
  const int64_t centred = u <= (n - 1) / 2 ? u : u - n;
  return static_cast<double>(centred) / static_cast<double>(n);
}
}  // namespace

std::vector<float> highpass_mask(int64_t h, int64_t w, double rho_c, double tau) {
  std::vector<float> m(static_cast<size_t>(h * w));
  for (int64_t u = 0; u < h; ++u)
    for (int64_t v = 0; v < w; ++v) {
      const double fu = fftfreq(u, h), fv = fftfreq(v, w);
      const double rho = std::sqrt(fu * fu + fv * fv);
      const double val =
          tau == 0 ? (rho >= rho_c ? 1.0 : 0.0) : 1.0 / (1.0 + std::exp(-(rho - rho_c) / tau));
      m[u * w + v] = static_cast<float>(val);
    }
  return m;
}

void highpass(const float* x, int64_t n_images, int64_t h, int64_t w, const float* mask, float* y) {
  using cd = std::complex<double>;
  // twiddles e^{-2πi k/n}, indexed by (a*b) mod n
  auto twiddles = [](int64_t n) {
    std::vector<cd> t(static_cast<size_t>(n));
    for (int64_t k = 0; k < n; ++k)
      t[k] = std::polar(1.0, -2.0 * M_PI * static_cast<double>(k) / static_cast<double>(n));
    return t;
  };
  const std::vector<cd> th = twiddles(h), tw = twiddles(w);
  std::vector<cd> a(static_cast<size_t>(h * w)), bb(static_cast<size_t>(h * w));
  for (int64_t img = 0; img < n_images; ++img) {
    const float* xi = x + img * h * w;
    // forward: rows (over v), then columns (over u)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t v = 0; v < w; ++v) {
        cd acc = 0;
        for (int64_t c = 0; c < w; ++c) acc += static_cast<double>(xi[r * w + c]) * tw[(v * c) % w];
        a[r * w + v] = acc;
      }
    for (int64_t u = 0; u < h; ++u)
      for (int64_t v = 0; v < w; ++v) {
        cd acc = 0;
        for (int64_t r = 0; r < h; ++r) acc += a[r * w + v] * th[(u * r) % h];
        bb[u * w + v] = acc * static_cast<double>(mask[u * w + v]);
      }
    // inverse: conj twiddles, columns then rows, real part / (h w)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t v = 0; v < w; ++v) {
        cd acc = 0;
        for (int64_t u = 0; u < h; ++u) acc += bb[u * w + v] * std::conj(th[(u * r) % h]);
        a[r * w + v] = acc;
      }
    for (int64_t r = 0; r < h; ++r)
      for (int64_t c = 0; c < w; ++c) {
        double acc = 0;
        for (int64_t v = 0; v < w; ++v) acc += (a[r * w + v] * std::conj(tw[(v * c) % w])).real();
        y[img * h * w + r * w + c] = static_cast<float>(acc / static_cast<double>(h * w));
      }
  }
}

}  // namespace duet::ops
