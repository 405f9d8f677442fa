// The DiT patch embedding (a convolution with kernel = stride = p, no padding, token output) as
// patchify + one GEMM: x [B, C, H, W] -> patches [B·N, C·p·p] -> y [B, N, D] through a prepared
// linear layer whose W [D, C·p·p] is the OIHW kernel read row by row. oneDNN 2.6 has no fast
// convolution for NCHW input with NHWC output and falls back to its reference kernel (≈ 230 ms
// per seed-scale denoise); the GEMM form runs on the same pre-packed matmul as every linear.
#pragma once

#include <cstdint>
#include <memory>

#include "backends/backend.h"

namespace duet::cpu {

class PatchConv final : public PreparedConv {
 public:
  std::unique_ptr<PreparedLinear> linear;  // [D, C·p·p]
};

// True when the convolution is a patch embedding this path handles.
inline bool is_patch_conv(const ConvDesc& d) {
  return d.tokens_out && d.k == d.stride && d.pad == 0;
}

// patches [B·(H/p)·(W/p), C·p·p] from x [B, C, H, W]; feature index c·p·p + ki·p + kj.
void patchify(const float* x, int64_t b, int64_t c, int64_t h, int64_t w, int64_t p,
              float* patches);

}  // namespace duet::cpu
