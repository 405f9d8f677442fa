// oneDNN convolution of the cpu backend, fp32 or bf16 weights (one implementation for both).
//
// The model keeps images NCHW; oneDNN's fast direct / brgemm convolutions want blocked or NHWC
// activations (with plain NCHW it picks im2col + GEMM, and for bf16 an even slower path). So the
// primitive is created with "any" activation layouts and the call reorders x (NCHW f32) into the
// primitive's source layout — converting to bf16 (round to nearest even) in the same pass for
// bf16 weights — and the result back to NCHW (or NHWC for tokens_out). Bias and the activation
// are fused as post-ops. Weights are packed at prepare time for a representative shape; a shape
// whose preferred weights layout differs gets its own reordered copy (made from the packed one),
// once, during the Context warm-up. Reordered activations live in per-thread buffers that only
// grow during the warm-up: a steady-state call creates and allocates nothing of duet's own.
#pragma once

#include <cstdint>
#include <memory>

#include "backends/backend.h"

namespace duet::cpu {

// w.precision: kF32 or kBF16 (OIHW weights).
Result<std::unique_ptr<PreparedConv>> dnnl_prepare_conv(const LayerWeights& w, const float* b,
                                                        const ConvDesc& d);
// x [B, Cin, H, W] f32 -> y [B, Cout, Ho, Wo] f32 (or [B, Ho·Wo, Cout] when tokens_out).
void dnnl_conv2d(const PreparedConv& op, const float* x, int64_t b, int64_t h, int64_t w, float* y);

}  // namespace duet::cpu
