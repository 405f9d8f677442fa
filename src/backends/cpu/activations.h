// In-place activations of the cpu backend (activations.cpp).
#pragma once

#include <cstdint>

namespace duet::cpu {

// x [n] = gelu_tanh(x) (ops::gelu_tanh's formula in float; |error| <= 2e-6 · (1 + |x|)).
void gelu_tanh_inplace(float* x, int64_t n);

}  // namespace duet::cpu
