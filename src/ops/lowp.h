// Reduced-precision (bf16 / int8) math: the rounding rules shared by every implementation, and
// the plain reference twins of the cpu backend's bf16 / int8 GEMMs (tests/cpp/test_precision.cpp
// compares them). Rounding is round-to-nearest-even everywhere.
//
//   bf16 : x -> the nearest bf16 (fp32 with the low 16 mantissa bits dropped, RNE).
//   int8 : symmetric, scale = max|v| / L (1 when max|v| = 0), q = clamp(rne(v / scale), ±L);
//          weights: L = 127, one scale per output channel (row of W [out, in]);
//          activations: L = 127, one scale per call (the whole [M, K] input of the GEMM).
//          Where the CPU has no VNNI int8 dot products (AVX2, AVX-512 without VNNI) their u8·s8
//          pair instruction saturates at 16 bits: there activations travel as u8 = q + 128 in
//          [1, 255] and the weights are halved to 7 bits (halve_int8_rows: q7 = rne(q / 2) in
//          [-64, 64], scale · 2), so every pair sum stays <= 2 · 255 · 64 < 2^15.
//          y[i, o] = (float(Σ_k qx[i, k] · qw[o, k]) · sw[o]) · sx + b[o]   (int32 accumulation)
#pragma once

#include <cstdint>
#include <cstring>

namespace duet::ops {

inline uint16_t bf16_bits(float f) {  // RNE; finite inputs (NaN / Inf are not produced here)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float bf16_value(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float round_bf16(float f) { return bf16_value(bf16_bits(f)); }

constexpr int kInt8U8Offset = 128;  // no-VNNI activations are stored as u8 = q + 128

// Scale for a symmetric quantisation to ±levels of values with max |v| = amax.
inline float int8_scale(float amax, int levels = 127) {
  return amax > 0.f ? amax / static_cast<float>(levels) : 1.f;
}
// clamp(rne(v * inv_scale), -levels, levels); the magic-number rounding is RNE under the default
// FP environment and vectorises (no libm call).
inline int8_t quantize_s8(float v, float inv_scale, int levels = 127) {
  const float l = static_cast<float>(levels);
  float r = v * inv_scale;
  r = r < -l ? -l : (r > l ? l : r);
  r = (r + 12582912.f) - 12582912.f;  // 1.5 * 2^23
  return static_cast<int8_t>(static_cast<int>(r));
}

// ---- weight quantisation (load time / `duet quantize`) ----------------------------------------
void to_bf16(const float* x, int64_t n, uint16_t* y);
void from_bf16(const uint16_t* x, int64_t n, float* y);
// w [out, in] -> q [out, in], scale [out] (per output channel).
void quantize_rows_int8(const float* w, int64_t out, int64_t in, int8_t* q, float* scale);
// The no-VNNI weights (header comment): q7 = rne(q / 2) (ties to even) in [-64, 64],
// scale7 = 2 · scale. Derived from the 8-bit weights, so a `duet quantize` checkpoint and
// load-time quantisation still give the same model on every CPU. q7 may alias q.
void halve_int8_rows(const int8_t* q, const float* scale, int64_t out, int64_t in, int8_t* q7,
                     float* scale7);
// w [out, in] = q * scale[row].
void dequantize_rows_int8(const int8_t* q, const float* scale, int64_t out, int64_t in, float* w);

// ---- reference twins ---------------------------------------------------------------------------
// y [M, N] = bf16(x) [M, K] · w_bf16 [N, K]ᵀ + b  (products exact, double accumulation).
void linear_bf16(const float* x, const uint16_t* w, const float* b, int64_t m, int64_t k, int64_t n,
                 float* y);
// y [M, N] as in the header comment: x quantised per call, w per output channel.
void linear_int8(const float* x, const int8_t* w, const float* w_scale, const float* b, int64_t m,
                 int64_t k, int64_t n, float* y);
// bf16 convolution twin: ops::conv2d / ops::patch_embed on bf16-rounded inputs is done by the
// reference backend with round_bf16 over x (weights are stored bf16).

}  // namespace duet::ops
