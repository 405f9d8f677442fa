#include "backends/cpu/patch_conv.h"

namespace duet::cpu {

void patchify(const float* x, int64_t b, int64_t c, int64_t h, int64_t w, int64_t p,
              float* patches) {
  const int64_t hp = h / p, wp = w / p, feat = c * p * p;
#pragma omp parallel for schedule(static) if (b * c * h * w > 65536)
  for (int64_t row = 0; row < b * hp; ++row) {
    const int64_t bi = row / hp, i = row % hp;
    for (int64_t j = 0; j < wp; ++j) {
      float* dst = patches + (row * wp + j) * feat;  // [C, p, p]
      for (int64_t ci = 0; ci < c; ++ci)
        for (int64_t ki = 0; ki < p; ++ki) {
          const float* src = x + ((bi * c + ci) * h + i * p + ki) * w + j * p;  // [p]
          for (int64_t kj = 0; kj < p; ++kj) dst[(ci * p + ki) * p + kj] = src[kj];
        }
    }
  }
}

}  // namespace duet::cpu
