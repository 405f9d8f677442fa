// Reference embeddings (layers.py): timestep sinusoid and 2-D sin-cos position embedding, both
// computed in double and rounded to float once.
#include <cmath>
#include <vector>

#include "ops/ops.h"

namespace duet::ops {

void timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period, float* y) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t k = 0; k < half; ++k) {
      // torch: exp(-log(max_period) * k / half), evaluated left to right in float64
      const double f =
          std::exp(-std::log(max_period) * static_cast<double>(k) / static_cast<double>(half));
      const double arg = static_cast<double>(t[i]) * f;
      y[i * dim + k] = static_cast<float>(std::cos(arg));
      y[i * dim + half + k] = static_cast<float>(std::sin(arg));
    }
}

std::vector<float> pos_embed_2d(int64_t dim, int64_t gh, int64_t gw) {
  const int64_t d = dim / 2, q = d / 2;  // each axis gets d = dim/2 columns: q sines, q cosines
  std::vector<float> e(static_cast<size_t>(gh * gw * dim));
  for (int64_t i = 0; i < gh; ++i)
    for (int64_t j = 0; j < gw; ++j) {
      float* row = e.data() + (i * gw + j) * dim;  // [dim]
      for (int64_t k = 0; k < q; ++k) {
        const double w =
            1.0 / std::pow(10000.0, static_cast<double>(k) / (static_cast<double>(d) / 2.0));
        row[k] = static_cast<float>(std::sin(static_cast<double>(j) * w));
        row[q + k] = static_cast<float>(std::cos(static_cast<double>(j) * w));
        row[d + k] = static_cast<float>(std::sin(static_cast<double>(i) * w));
        row[d + q + k] = static_cast<float>(std::cos(static_cast<double>(i) * w));
      }
    }
  return e;
}

}  // namespace duet::ops
