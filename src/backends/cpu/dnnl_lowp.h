// Reduced-precision linear layers of the cpu backend (bf16 convolutions: dnnl_conv.h) (oneDNN 2.6,
// AVX512-BF16 / VNNI kernels):
//   bf16 linear : matmul src bf16 · weights bf16 (pre-packed) -> dst f32, fp32 accumulation,
//                 bias + activation fused as today.
//   int8 linear : matmul src s8 · weights s8 (pre-packed, brgemm VNNI) -> dst f32, int32
//                 accumulation; constant output scales s_w[n] (mask: per N), then post-ops
//                 × s_x (binary mul by a [1, 1] tensor given per call), + bias (binary add:
//                 oneDNN 2.x would scale a matmul bias) and the activation.
//                 Without VNNI (AVX2, AVX-512 without VNNI: u8·s8 pairs saturate at 16 bits in
//                 vpmaddubsw): src u8 = q + 128 with a constant src zero point of 128 and 7-bit
//                 weights, so pair sums stay < 2^15 and the result is exact (ops/lowp.h).
// Activations are converted per call (RNE; int8: one symmetric scale per call from max |x|)
// into a per-thread buffer that grows during the Context warm-up and is then only reused; the
// rounding is exactly ops/lowp.h's, so the reference twins (ops::linear_bf16 / linear_int8)
// differ only by accumulation order.
#pragma once

#include <cstdint>
#include <memory>

#include "backends/backend.h"

namespace duet::cpu {

Result<std::unique_ptr<PreparedLinear>> dnnl_prepare_linear_lowp(const LayerWeights& w,
                                                                 const float* b, int64_t out,
                                                                 int64_t in, Activation act);
void dnnl_linear_lowp(const PreparedLinear& op, const float* x, int64_t m, float* y);

}  // namespace duet::cpu
