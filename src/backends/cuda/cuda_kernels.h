// Launchers of the CUDA backend's own kernels (the .cu files of this folder). Every pointer is a
// device address; every launch goes to `st` and returns without synchronising. Shapes as in
// backends/backend.h. Nothing here allocates except attention's split-KV partials (`scratch`,
// sized by attention_scratch_floats).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "ops/ops.h"

namespace duet::cuda {

// ---- activations, conversions (kernels_image.cu) ----
// y = act(y) in place; act: 1 GELU (tanh), 2 SiLU, 3 sigmoid (backend.h's Activation - 0 = none)
void launch_activation(int act, float* y, int64_t n, cudaStream_t st);
void launch_to_bf16(const float* x, int64_t n, uint16_t* y, cudaStream_t st);
// Direct convolution (fp32 sums); round_x: x rounded to bf16 per element (bf16 convolutions,
// whose weights are stored bf16-exact). tokens_out: y [B, Ho*Wo, Cout].
void launch_conv2d(const float* x, const float* w, const float* bias, int64_t b, int64_t cin,
                   int64_t h, int64_t wd, int64_t cout, int64_t k, int64_t stride, int64_t pad,
                   bool tokens_out, int act, bool round_x, float* y, cudaStream_t st);
void launch_carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
                   int64_t k, int64_t s, float* scratch, float* y, cudaStream_t st);
void launch_unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                       float* out, cudaStream_t st);
// spec [n, H, W/2+1] complex (float2) *= mask_half [H, W/2+1] (real, includes 1/(HW))
void launch_spectrum_mask(void* spec, const float* mask_half, int64_t n, int64_t per,
                          cudaStream_t st);

// ---- norms (kernels_norm.cu) ----
void launch_layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                       float eps, float* y, cudaStream_t st);
void launch_layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                                const float* shift, const float* scale, int64_t mod_stride,
                                float* y, cudaStream_t st);
void launch_group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                       const float* gamma, const float* beta, float eps, bool silu, float* y,
                       cudaStream_t st);

// ---- attention (kernels_attention.cu) ----
// Split count the launcher will use (FlashAttention's heuristic over this GPU's SMs).
int attention_splits(const ops::AttentionArgs& a, int sms);
int64_t attention_scratch_floats(const ops::AttentionArgs& a, int splits);
// scratch: attention_scratch_floats(a, splits) floats (may be null when splits == 1).
void launch_attention(const ops::AttentionArgs& a, int splits, float* scratch, cudaStream_t st);
// SLAB linear attention (kernels_slab.cu); a.scratch: ops::slab_scratch_floats() floats.
void launch_slab_attention(const ops::SlabAttentionArgs& a, cudaStream_t st);
// CSWin (kernels_cswin.cu), per branch `which` (ops/cswin_layout.h): gather the windows into
// a.scratch (q, k, v, key mask; returns the AttentionArgs over them for the backend's attention),
// then scatter the attention output back with the LePE taps added.
ops::AttentionArgs launch_cswin_gather(const ops::CswinAttentionArgs& a, int which,
                                       cudaStream_t st);
void launch_cswin_scatter(const ops::CswinAttentionArgs& a, int which, cudaStream_t st);

// ---- elementwise glue (kernels_elementwise.cu) ----
void launch_add(float* x, const float* y, int64_t outer, int64_t n, cudaStream_t st);
void launch_add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b,
                           int64_t n, int64_t d, cudaStream_t st);
void launch_silu(const float* x, float* y, int64_t n, cudaStream_t st);
void launch_modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
                     const float* scale, int64_t mod_stride, float* y, cudaStream_t st);
void launch_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                 int64_t b, int64_t c, int64_t hw, cudaStream_t st);
void launch_concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb,
                            int64_t batch, int64_t hw, float* y, cudaStream_t st);
void launch_concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                             int64_t hw, float* y, cudaStream_t st);
void launch_dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c,
                           int64_t hw, cudaStream_t st);
void launch_fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha,
                 int64_t b, int64_t per, float* eps, cudaStream_t st);
void launch_global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw, float* y,
                            cudaStream_t st);
void launch_timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period, float* y,
                              cudaStream_t st);
void launch_embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b,
                         int64_t l, int64_t d, float* x, cudaStream_t st);
void launch_masked_mean(const float* e, const uint8_t* mask, int64_t b, int64_t l, int64_t d,
                        float* p, cudaStream_t st);

}  // namespace duet::cuda
