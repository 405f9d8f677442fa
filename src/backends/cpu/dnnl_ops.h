// oneDNN-backed fp32 linear (matmul) of the cpu backend (convolutions: dnnl_conv.h).
//
// Weights are reordered once at prepare time into the layout oneDNN's primitive prefers for a
// representative shape (pre-packing); bias and the activation are fused as post-ops. Primitives
// depend on the activation shape (rows M for matmul, B×H×W for conv): each prepared op keeps a
// small mutex-protected cache shape -> {primitive, weights memory}; a new shape whose preferred
// weights layout differs gets its own reordered copy (made from the packed one). The engine is
// process-wide; streams are thread-local, so concurrent Contexts may share a Model.
#pragma once

#include <cstdint>
#include <memory>

#include "backends/backend.h"

namespace duet::cpu {

// Where a GELU runs: fused as oneDNN's eltwise post-op, or as a separate Highway pass over the
// output of a plain matmul (activations.h). kAuto picks by the ISA oneDNN dispatches to (the
// per-ISA measurement is in docs/benchmarks.md, "GELU-fused GEMM"); the others are for tests and
// bench/kernels.cpp. Other activations are always fused.
enum class ActPlacement { kAuto, kPostOp, kSeparate };

Result<std::unique_ptr<PreparedLinear>> dnnl_prepare_linear(
    const float* w, const float* b, int64_t out, int64_t in, Activation act,
    ActPlacement place = ActPlacement::kAuto);
void dnnl_linear(const PreparedLinear& op, const float* x, int64_t m, float* y);

}  // namespace duet::cpu
