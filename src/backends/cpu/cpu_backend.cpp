// The optimised CPU backend: oneDNN for the weight-bearing ops, hand-written OpenMP kernels for
// attention / norms / CARAFE, FFTW for the high-pass. One OpenMP runtime (GNU) is shared with
// oneDNN, so there is no oversubscription: each op uses omp_get_max_threads() threads in turn.
#include "backends/backend.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/dnnl_common.h"
#include "backends/cpu/dnnl_conv.h"
#include "backends/cpu/dnnl_lowp.h"
#include "backends/cpu/dnnl_ops.h"
#include "backends/cpu/elementwise.h"
#include "backends/cpu/fft_highpass.h"
#include "backends/cpu/patch_conv.h"
#include "duet/cpu_features.h"
#include "ops/elementwise.h"

namespace duet {
namespace {

class CpuBackend final : public Backend {
 public:
  // Applies DUET_MAX_ISA to oneDNN and Highway before any kernel runs (a malformed value is
  // reported by Model::load through cpu_info()).
  CpuBackend() { static_cast<void>(cpu_info()); }

  // Reduced precision that oneDNN cannot run here is refused by name, not with its internal
  // "could not create a primitive descriptor iterator".
  static Status supported_here(Precision p) {
    DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
    return cpu_precision_support(p, *cpu);
  }
  const char* name() const override { return "cpu"; }
  Result<std::unique_ptr<PreparedLinear>> prepare_linear(const float* w, const float* b,
                                                         int64_t out, int64_t in,
                                                         Activation act) const override {
    return cpu::dnnl_prepare_linear(w, b, out, in, act);
  }
  void linear(const PreparedLinear& op, const float* x, int64_t m, float* y) const override {
    if (op.precision == Precision::kF32) {
      cpu::dnnl_linear(op, x, m, y);
    } else {
      cpu::dnnl_linear_lowp(op, x, m, y);
    }
  }
  Result<std::unique_ptr<PreparedLinear>> prepare_linear_weights(const LayerWeights& w,
                                                                 const float* b, int64_t out,
                                                                 int64_t in,
                                                                 Activation act) const override {
    if (w.precision == Precision::kF32) return cpu::dnnl_prepare_linear(w.f32, b, out, in, act);
    DUET_RETURN_IF_ERROR(supported_here(w.precision));
    return cpu::dnnl_prepare_linear_lowp(w, b, out, in, act);
  }
  Result<std::unique_ptr<PreparedConv>> prepare_conv_weights(const LayerWeights& w, const float* b,
                                                             const ConvDesc& d) const override {
    if (w.precision != Precision::kF32) DUET_RETURN_IF_ERROR(supported_here(w.precision));
    if (cpu::is_patch_conv(d)) {
      auto op = std::make_unique<cpu::PatchConv>();
      op->desc = d;
      op->precision = w.precision;
      DUET_ASSIGN_OR_RETURN(op->linear,
                            prepare_linear_weights(w, b, d.cout, d.cin * d.k * d.k, d.act));
      return std::unique_ptr<PreparedConv>(std::move(op));
    }
    return cpu::dnnl_prepare_conv(w, b, d);
  }
  Result<std::unique_ptr<PreparedConv>> prepare_conv(const float* w, const float* b,
                                                     const ConvDesc& d) const override {
    LayerWeights lw;
    lw.f32 = w;
    return prepare_conv_weights(lw, b, d);
  }
  void conv2d(const PreparedConv& op, const float* x, int64_t b, int64_t h, int64_t w,
              float* y) const override {
    // prepare_conv_weights made a PatchConv exactly when the descriptor is a patch embedding.
    if (cpu::is_patch_conv(op.desc)) {
      const auto* pc = static_cast<const cpu::PatchConv*>(&op);
      const ConvDesc& d = op.desc;
      const int64_t rows = b * (h / d.k) * (w / d.k), feat = d.cin * d.k * d.k;
      auto* patches = static_cast<float*>(
          cpu::thread_buffer(cpu::ThreadBuffer::kPatches, sizeof(float) * rows * feat));
      cpu::patchify(x, b, d.cin, h, w, d.k, patches);  // [B·N, C·p·p]
      linear(*pc->linear, patches, rows, y);           // [B, N, D]
      return;
    }
    cpu::dnnl_conv2d(op, x, b, h, w, y);
  }
  void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                  float eps, float* y) const override {
    cpu::layer_norm(x, m, d, gamma, beta, eps, y);
  }
  void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                           const float* shift, const float* scale, int64_t mod_stride,
                           float* y) const override {
    cpu::layer_norm_modulate(x, b, n, d, eps, shift, scale, mod_stride, y);
  }
  void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                  const float* gamma, const float* beta, float eps, bool silu,
                  float* y) const override {
    cpu::group_norm(x, b, c, hw, groups, gamma, beta, eps, silu, y);
  }
  void attention(const ops::AttentionArgs& a) const override { cpu::attention(a); }
  void slab_attention(const ops::SlabAttentionArgs& a) const override { cpu::slab_attention(a); }
  void cswin_attention(const ops::CswinAttentionArgs& a) const override { cpu::cswin_attention(a); }
  void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
              int64_t k, int64_t s, float* scratch, float* y) const override {
    cpu::carafe(x, enc, b, c, h, w, k, s, scratch, y);
  }
  int64_t carafe_scratch_floats(int64_t b, int64_t c, int64_t h, int64_t w, int64_t k,
                                int64_t s) const override {
    return cpu::carafe_scratch_floats(b, c, h, w, k, s);
  }
  Result<std::unique_ptr<SpectralPlan>> plan_spectral(int64_t h, int64_t w,
                                                      const float* mask) const override {
    return cpu::FftwHighpass::create(h, w, mask);
  }

  void add(float* x, const float* y, int64_t outer, int64_t n) const override {
    cpu::add_broadcast(x, y, outer, n);
  }
  void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b,
                      int64_t n, int64_t d) const override {
    cpu::add_gated_rows(x, y, g, gstride, b, n, d);
  }
  void silu(const float* x, float* y, int64_t n) const override { cpu::silu_copy(x, y, n); }
  void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
                const float* scale, int64_t mod_stride, float* y) const override {
    cpu::modulate(x, b, n, d, shift, scale, mod_stride, y);
  }
  void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b, int64_t c,
            int64_t hw) const override {
    cpu::film(h, scale, shift, mstride, b, c, hw);
  }
  void gated_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                  int64_t b, int64_t c, int64_t hw) const override {
    cpu::gated_film(h, scale, shift, g, mstride, b, c, hw);
  }
  void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb, int64_t batch,
                       int64_t hw, float* y) const override {
    cpu::concat_channels(a, ca, bsrc, cb, batch, hw, y);
  }
  void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                        int64_t hw, float* y) const override {
    cpu::concat_broadcast(a, ca, m, cm, batch, hw, y);
  }
  void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c,
                      int64_t hw) const override {
    cpu::dual_attention(h, ac, as, b, c, hw);
  }
  void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha,
            int64_t b, int64_t per, float* eps) const override {
    cpu::fuse(eps_s, hp_s, eps_d, alpha, b, per, eps);
  }
  // The small per-call ops below run the reference loops (a few KB each, once per call or per
  // prompt: threading them would cost more than they take).
  void global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw, float* y) const override {
    ops::global_avg_pool(x, b, c, hw, y);
  }
  void timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period,
                         float* y) const override {
    ops::timestep_sinusoid(t, b, dim, max_period, y);
  }
  void unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                  float* out) const override {
    ops::unpatchify(y, b, gh, gw, p, c, out);
  }
  void embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b, int64_t l,
                    int64_t d, float* x) const override {
    ops::embed_tokens(ids, tok, pos, b, l, d, x);
  }
  void masked_mean(const float* e, const uint8_t* mask, int64_t b, int64_t l, int64_t d,
                   float* p) const override {
    ops::masked_mean(e, mask, b, l, d, p);
  }
};

}  // namespace

const Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace duet
