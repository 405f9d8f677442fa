// cuBLASLt linear layers: y [M, out] = act(x [M, in] · Wᵀ + b) (cuda_linear.cpp).
#pragma once

#include <memory>

#include "backends/backend.h"

namespace duet::cuda {

// kF32 and kBF16 weights (copied to the device); kInt8: kUnimplemented (not built yet).
Result<std::unique_ptr<PreparedLinear>> prepare_linear(const LayerWeights& w, const float* b,
                                                       int64_t out, int64_t in, Activation act);
void run_linear(const PreparedLinear& op, const float* x, int64_t m, float* y);

}  // namespace duet::cuda
