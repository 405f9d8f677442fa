// Reference twins of the reduced-precision GEMMs and the weight (de)quantisers (ops/lowp.h).
#include "ops/lowp.h"

#include <cmath>
#include <vector>

#include "ops/ops.h"

namespace duet::ops {

void to_bf16(const float* x, int64_t n, uint16_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_bits(x[i]);
}

void from_bf16(const uint16_t* x, int64_t n, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_value(x[i]);
}

void quantize_rows_int8(const float* w, int64_t out, int64_t in, int8_t* q, float* scale) {
  for (int64_t o = 0; o < out; ++o) {
    const float* row = w + o * in;
    float amax = 0.f;
    for (int64_t k = 0; k < in; ++k) amax = std::fmax(amax, std::fabs(row[k]));
    scale[o] = int8_scale(amax);
    const float inv = 1.f / scale[o];
    for (int64_t k = 0; k < in; ++k) q[o * in + k] = quantize_s8(row[k], inv);
  }
}

void dequantize_rows_int8(const int8_t* q, const float* scale, int64_t out, int64_t in, float* w) {
  for (int64_t o = 0; o < out; ++o)
    for (int64_t k = 0; k < in; ++k) w[o * in + k] = static_cast<float>(q[o * in + k]) * scale[o];
}

void linear_bf16(const float* x, const uint16_t* w, const float* b, int64_t m, int64_t k, int64_t n,
                 float* y) {
  std::vector<float> xr(static_cast<size_t>(m * k)), wr(static_cast<size_t>(n * k));
  for (int64_t i = 0; i < m * k; ++i) xr[i] = round_bf16(x[i]);
  from_bf16(w, n * k, wr.data());
  linear(xr.data(), wr.data(), b, m, k, n, y);
}

void halve_int8_rows(const int8_t* q, const float* scale, int64_t out, int64_t in, int8_t* q7,
                     float* scale7) {
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t j = 0; j < in; ++j) {
      const int v = q[o * in + j];
      const int h = v >> 1;  // floor(v / 2); odd v lies halfway between h and h + 1
      q7[o * in + j] = static_cast<int8_t>((v & 1) == 0 ? h : ((h & 1) == 0 ? h : h + 1));
    }
    scale7[o] = 2.f * scale[o];
  }
}

void linear_int8(const float* x, const int8_t* w, const float* w_scale, const float* b, int64_t m,
                 int64_t k, int64_t n, float* y) {
  float amax = 0.f;
  for (int64_t i = 0; i < m * k; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  const float sx = int8_scale(amax), inv = 1.f / sx;
  std::vector<int8_t> qx(static_cast<size_t>(m * k));
  for (int64_t i = 0; i < m * k; ++i) qx[i] = quantize_s8(x[i], inv);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t o = 0; o < n; ++o) {
      int32_t acc = 0;  // |acc| <= K * 127 * 127: exact for K < 133 000
      for (int64_t j = 0; j < k; ++j)
        acc += static_cast<int32_t>(qx[i * k + j]) * static_cast<int32_t>(w[o * k + j]);
      y[i * n + o] = static_cast<float>(acc) * w_scale[o] * sx + (b ? b[o] : 0.f);
    }
  }
}

}  // namespace duet::ops
