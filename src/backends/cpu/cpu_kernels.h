// Hand-written kernels of the cpu backend (OpenMP-parallel, vectorisable inner loops).
#pragma once

#include <cstdint>

#include "ops/ops.h"

namespace duet::cpu {

// Tiled attention with online softmax; OpenMP over batch × heads × query blocks.
void attention(const ops::AttentionArgs& a);
// SLAB linear attention (Highway); OpenMP over batch × heads, then over token rows.
void slab_attention(const ops::SlabAttentionArgs& a);
// CSWin stripe attention: windows gathered into a.scratch, the tiled attention() above with a key
// mask for ragged stripes, then scattered back with the LePE taps added; OpenMP throughout.
void cswin_attention(const ops::CswinAttentionArgs& a);
// LayerNorm (affine or plain) and the fused LayerNorm + adaLN modulate; OpenMP over rows.
void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                float eps, float* y);
void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                         const float* shift, const float* scale, int64_t mod_stride, float* y);
// Fused GroupNorm (+ SiLU); OpenMP over batch × groups.
void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                const float* gamma, const float* beta, float eps, bool silu, float* y);
// Fused pixel-shuffle + softmax + reassembly (Highway); scratch: carafe_scratch_floats().
void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w, int64_t k,
            int64_t s, float* scratch, float* y);
int64_t carafe_scratch_floats(int64_t b, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s);

}  // namespace duet::cpu
