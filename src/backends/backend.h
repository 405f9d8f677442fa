// duet::Backend — the narrow interface through which the model runs every op (like ggml's
// backend). Implementations:
//   * reference (src/backends/reference/): forwards to duet::ops (naive, single-threaded);
//   * cpu       (src/backends/cpu/):       oneDNN matmul/conv with pre-packed weights, tiled
//                                         attention, fused norms, FFTW high-pass, OpenMP;
//   * cuda      (src/backends/cuda/, -DDUET_CUDA=ON): cuBLASLt, cuFFT, own kernels (docs/gpu.md).
// Weight-bearing ops are "prepared" once at model load (packing, primitive creation); the
// prepared objects are immutable afterwards and may be shared by concurrent Contexts. Run-time
// state that depends on the activation shape (oneDNN primitives per row count / image size) is
// created on first use and cached inside the prepared op (mutex-protected); a Context's warm-up
// evaluation triggers that, so steady-state denoise calls only look it up.
// Every pointer an op takes is a backend address: memory from this backend's alloc() (or owned
// by its prepared ops). The model code (src/model/) only says which ops run in which order on
// which buffers; it does no arithmetic itself. See docs/architecture.md, "Backends".
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backends/buffer.h"
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

  // ---- memory (defaults: host memory, 64-byte aligned; backend_memory.cpp) ----
  // true: backend addresses are host pointers that host code may read and write (cpu,
  // reference). false: a device-style boundary; host data crosses it only through upload /
  // download (reference-device, a GPU backend).
  virtual bool host_visible() const { return true; }
  // A zeroed buffer; kResourceExhausted when the memory cannot be had.
  virtual Result<std::shared_ptr<BackendBuffer>> alloc(size_t bytes) const;
  virtual void upload(void* dst, const void* host_src, size_t bytes) const;
  virtual void download(void* host_dst, const void* src, size_t bytes) const;
  virtual void copy(void* dst, const void* src, size_t bytes) const;  // backend to backend

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
  // SLAB linear attention (ops.h); a.scratch holds slab_scratch_floats() floats.
  virtual void slab_attention(const ops::SlabAttentionArgs& a) const = 0;
  virtual int64_t slab_scratch_floats(int64_t b, int64_t heads, int64_t d, int64_t kernel) const {
    return ops::slab_scratch_floats(b, heads, d, kernel);
  }
  // CSWin stripe attention with LePE (ops.h); a.scratch holds cswin_scratch_floats() floats.
  virtual void cswin_attention(const ops::CswinAttentionArgs& a) const = 0;
  virtual int64_t cswin_scratch_floats(int64_t b, int64_t heads, int64_t d, int64_t gh, int64_t gw,
                                       int64_t stripe, int64_t kernel) const {
    return ops::cswin_scratch_floats(b, heads, d, gh, gw, stripe, kernel);
  }
  // enc [B, s*s*k*k, H, W] logits -> y [B, C, sH, sW]; scratch: carafe_scratch_floats() floats.
  virtual void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
                      int64_t k, int64_t s, float* scratch, float* y) const = 0;
  virtual int64_t carafe_scratch_floats(int64_t b, int64_t /*c*/, int64_t h, int64_t w, int64_t k,
                                        int64_t s) const {
    return b * k * k * h * s * w * s;
  }
  // `mask` [H, W] is a host array (a planning input, copied by the plan).
  virtual Result<std::unique_ptr<SpectralPlan>> plan_spectral(int64_t h, int64_t w,
                                                              const float* mask) const = 0;

  // ---- elementwise glue (reference twins and exact formulas: ops/elementwise.h) ----
  // x [outer, n] += y [n] (outer = 1: x += y)
  virtual void add(float* x, const float* y, int64_t outer, int64_t n) const = 0;
  // x [B, N, D] += g[b, :] * y [B, N, D] (g rows gstride apart; null g: x += y)
  virtual void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b,
                              int64_t n, int64_t d) const = 0;
  virtual void silu(const float* x, float* y, int64_t n) const = 0;  // y = x * sigmoid(x)
  // y [B, N, D] = x * (1 + scale[b, :]) + shift[b, :] (adaLN modulate without a norm)
  virtual void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
                        const float* scale, int64_t mod_stride, float* y) const = 0;
  // h [B, C, HW] = h * (1 + scale[b, c]) + shift[b, c]
  virtual void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b,
                    int64_t c, int64_t hw) const = 0;
  // h = h + sigmoid(g) * (film(h) - h)
  virtual void gated_film(float* h, const float* scale, const float* shift, const float* g,
                          int64_t mstride, int64_t b, int64_t c, int64_t hw) const = 0;
  // y [B, ca + cb, HW] = concat(a [B, ca, HW], bsrc [B, cb, HW])
  virtual void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb,
                               int64_t batch, int64_t hw, float* y) const = 0;
  // y [B, ca + cm, HW] = concat(a [B, ca, HW], m [B, cm] broadcast over HW)
  virtual void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm,
                                int64_t batch, int64_t hw, float* y) const = 0;
  // h [B, C, HW] *= ac [B, C] * as [B, C, HW]
  virtual void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c,
                              int64_t hw) const = 0;
  // eps = ((eps_s - hp_s) + a hp_s) + (1 - a) eps_d per image of `per` floats, a = alpha [B]
  virtual void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha,
                    int64_t b, int64_t per, float* eps) const = 0;
  // y [B, C] = mean over HW of x [B, C, HW]
  virtual void global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw,
                               float* y) const = 0;
  // y [B, dim] = [cos(t f_k), sin(t f_k)] (ops::timestep_sinusoid)
  virtual void timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period,
                                 float* y) const = 0;
  // y [B, N, p*p*C] -> out [B, C, gh*p, gw*p]
  virtual void unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                          float* out) const = 0;
  // x [B, L, D] = tok[ids] + pos[:L]  (ids I64 [B, L], in range)
  virtual void embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b,
                            int64_t l, int64_t d, float* x) const = 0;
  // p [B, D] = masked mean over L of e [B, L, D], mask bytes [B, L]
  virtual void masked_mean(const float* e, const uint8_t* mask, int64_t b, int64_t l, int64_t d,
                           float* p) const = 0;
};

// Process-wide singletons (stateless apart from caches).
// The backend of `k`, or why it cannot run here (kCuda: not compiled in, or no usable GPU).
Result<const Backend*> find_backend(BackendKind k);
// Precondition: find_backend(k) is ok (kCuda unavailable falls back to the reference backend).
const Backend& get_backend(BackendKind k);
const Backend& reference_backend();
const Backend& reference_device_backend();
const Backend& cpu_backend();
#ifdef DUET_HAVE_CUDA
const Backend& cuda_backend();  // src/backends/cuda/ (-DDUET_CUDA=ON); needs a usable GPU
#endif

// reference-device checks every pointer an op receives against its live buffers (and its
// prepared ops' weights); a pointer outside them (host memory leaking across the boundary) is
// counted, and the first few are described. Process-wide; tests reset and read it.
struct BoundaryViolations {
  int64_t count = 0;
  std::string first;  // "layer_norm: x [0x..., +4096 bytes) is not in a reference-device buffer"
};
BoundaryViolations reference_device_violations();
void reset_reference_device_violations();

}  // namespace duet
