// duet::Backend — the narrow interface through which the model runs every op (like ggml's
// backend). Two implementations:
//   * reference (src/backends/reference/): forwards to duet::ops (naive, single-threaded);
//   * cpu       (src/backends/cpu/):       oneDNN matmul/conv with pre-packed weights, tiled
//                                         attention, fused norms, FFTW high-pass, OpenMP.
// Weight-bearing ops are "prepared" once at model load (packing, primitive creation); the
// prepared objects are immutable afterwards and may be shared by concurrent Contexts. Run-time
// state that depends on the activation shape (oneDNN primitives per row count / image size) is
// created on first use and cached inside the prepared op (mutex-protected); a Context's warm-up
// evaluation triggers that, so steady-state denoise calls only look it up.
// Activation/elementwise glue that is identical in both backends lives in src/model/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "duet/backend_kind.h"
#include "duet/precision.h"
#include "duet/status.h"
#include "ops/ops.h"

namespace duet {

enum class Activation { kNone, kGeluTanh, kSilu, kSigmoid };  // fused after the bias

// A linear layer y = act(x · Wᵀ + b), W [out, in] (PyTorch layout).
class PreparedLinear {
 public:
  virtual ~PreparedLinear() = default;
  int64_t out = 0, in = 0;
  Activation act = Activation::kNone;
  Precision precision = Precision::kF32;  // how the weights are stored and the GEMM runs
};

// A 2-D convolution (OIHW weights, zero padding). tokens_out: write [B, Ho*Wo, Cout] (NHWC,
// the DiT patch-embedding layout) instead of NCHW.
struct ConvDesc {
  int64_t cout = 0, cin = 0, k = 1, stride = 1, pad = 0;
  bool tokens_out = false;
  Activation act = Activation::kNone;
};
class PreparedConv {
 public:
  virtual ~PreparedConv() = default;
  ConvDesc desc;
  Precision precision = Precision::kF32;
};

// A layer's weights at their storage precision (include/duet/precision.h); only the pointers
// of `precision` are set. Layout as for prepare_linear / prepare_conv ([out, in] or OIHW).
struct LayerWeights {
  Precision precision = Precision::kF32;
  const float* f32 = nullptr;      // kF32
  const uint16_t* bf16 = nullptr;  // kBF16: bf16 bit patterns
  const int8_t* s8 = nullptr;      // kInt8: symmetric, no zero point
  const float* scale = nullptr;    // kInt8: one per output channel [out]
};

// Per-(H, W) high-pass projector: plans + scratch. Owned by a Context (not shareable).
class SpectralPlan {
 public:
  virtual ~SpectralPlan() = default;
  // y [n, H, W] = HP(x [n, H, W]); may be called with x == y.
  virtual void highpass(const float* x, int64_t n_images, float* y) = 0;
  int64_t h = 0, w = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // ---- weight-bearing ops (weights are copied or packed: the caller's arrays may go away) ----
  virtual Result<std::unique_ptr<PreparedLinear>> prepare_linear(const float* w, const float* b,
                                                                 int64_t out, int64_t in,
                                                                 Activation act) const = 0;
  // y [M, out] = act(x [M, in] · Wᵀ + b)
  virtual void linear(const PreparedLinear& op, const float* x, int64_t m, float* y) const = 0;

  virtual Result<std::unique_ptr<PreparedConv>> prepare_conv(const float* w, const float* b,
                                                             const ConvDesc& d) const = 0;

  // Reduced-precision preparation (kF32 forwards to prepare_linear / prepare_conv). Linear
  // layers: kF32, kBF16, kInt8; convolutions: kF32, kBF16. linear() / conv2d() dispatch on the
  // prepared op's precision. bf16 / int8 activations are converted per call into buffers planned
  // during the Context warm-up (no allocation in steady state).
  virtual Result<std::unique_ptr<PreparedLinear>> prepare_linear_weights(const LayerWeights& w,
                                                                         const float* b,
                                                                         int64_t out, int64_t in,
                                                                         Activation act) const = 0;
  virtual Result<std::unique_ptr<PreparedConv>> prepare_conv_weights(const LayerWeights& w,
                                                                     const float* b,
                                                                     const ConvDesc& d) const = 0;
  // x [B, Cin, H, W] -> y [B, Cout, Ho, Wo] (or [B, Ho*Wo, Cout] when desc.tokens_out)
  virtual void conv2d(const PreparedConv& op, const float* x, int64_t b, int64_t h, int64_t w,
                      float* y) const = 0;

  // ---- weightless ops ----
  virtual void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma,
                          const float* beta, float eps, float* y) const = 0;
  virtual void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                                   const float* shift, const float* scale, int64_t mod_stride,
                                   float* y) const = 0;
  virtual void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                          const float* gamma, const float* beta, float eps, bool silu,
                          float* y) const = 0;
  virtual void attention(const ops::AttentionArgs& a) const = 0;
  // enc [B, s*s*k*k, H, W] logits -> y [B, C, sH, sW]; scratch: carafe_scratch_floats() floats.
  virtual void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
                      int64_t k, int64_t s, float* scratch, float* y) const = 0;
  virtual int64_t carafe_scratch_floats(int64_t b, int64_t /*c*/, int64_t h, int64_t w, int64_t k,
                                        int64_t s) const {
    return b * k * k * h * s * w * s;
  }
  virtual Result<std::unique_ptr<SpectralPlan>> plan_spectral(int64_t h, int64_t w,
                                                              const float* mask) const = 0;
};

// Process-wide singletons (stateless apart from caches).
const Backend& get_backend(BackendKind k);
const Backend& reference_backend();
const Backend& cpu_backend();

}  // namespace duet
