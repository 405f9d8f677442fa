// Activation conversion for the bf16 / int8 GEMMs (Highway, runtime dispatch; OpenMP over
// chunks). Bit-exact with ops/lowp.h's scalar rules.
#pragma once

#include <cstdint>

namespace duet::cpu {

// y [n] = bf16 bits of x [n] (round to nearest even).
void convert_bf16(const float* x, int64_t n, uint16_t* y);
// q [n] = x quantised with one symmetric scale (ops::int8_scale(max |x|)) to ±127; returns the
// scale.
float quantize_activations(const float* x, int64_t n, int8_t* q);
// u [n] = kInt8U8Offset + (x quantised as quantize_activations does): the no-VNNI int8 GEMM
// input (ops/lowp.h); returns the scale.
float quantize_activations_u8(const float* x, int64_t n, uint8_t* u);

}  // namespace duet::cpu
