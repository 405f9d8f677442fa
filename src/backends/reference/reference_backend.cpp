// The reference backend: every op forwards to duet::ops (naive, single-threaded, double
// accumulation). Weights are copied so the prepared op owns them.
//
// reference-device is the same ops behind a device-style boundary: host_visible() is false (the
// model must upload inputs and download outputs), and every op checks each pointer it receives
// against the backend's live buffers (a registry of [address, address + bytes) ranges): a host
// pointer that slipped past the boundary is counted as a violation (boundary.h). A GPU backend
// would fault or read garbage there; here a test fails with the op and argument named.
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

#include "backends/backend.h"
#include "duet/cpu_features.h"
#include "ops/elementwise.h"
#include "ops/lowp.h"

namespace duet {
namespace {

// The live buffers of reference-device, and the violations seen.
class Boundary {
 public:
  void add(const void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    live_[reinterpret_cast<uintptr_t>(p)] = bytes;
  }
  void remove(const void* p) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.erase(reinterpret_cast<uintptr_t>(p));
  }
  // [p, p + bytes) inside one live buffer? Null pointers (optional arguments) pass.
  void check(const void* p, int64_t floats_or_bytes, size_t elem, const char* op, const char* arg) {
    if (!p || floats_or_bytes <= 0) return;
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    const size_t bytes = static_cast<size_t>(floats_or_bytes) * elem;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.upper_bound(a);
      if (it != live_.begin()) {
        --it;
        if (a >= it->first && a + bytes <= it->first + it->second) return;
      }
      ++count_;
      if (first_.empty()) {
        char buf[200];
        std::snprintf(buf, sizeof buf,
                      "%s: %s [%p, +%zu bytes) is not inside a reference-device buffer", op, arg, p,
                      bytes);
        first_ = buf;
      }
    }
  }
  BoundaryViolations violations() {
    std::lock_guard<std::mutex> lock(mu_);
    return {count_, first_};
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mu_);
    count_ = 0;
    first_.clear();
  }

 private:
  std::mutex mu_;
  std::map<uintptr_t, size_t> live_;
  int64_t count_ = 0;
  std::string first_;
};

Boundary& boundary() {
  static Boundary* b = new Boundary();  // outlives every static buffer's release
  return *b;
}

void apply_act(Activation act, float* y, int64_t n) {
  if (act == Activation::kGeluTanh) ops::gelu_tanh(y, n);
  if (act == Activation::kSilu) ops::silu(y, n);
  if (act == Activation::kSigmoid) ops::sigmoid(y, n);
}

class RefLinear : public PreparedLinear {
 public:
  std::vector<float> w, b;  // [out, in], [out]
};
class RefConv : public PreparedConv {
 public:
  std::vector<float> w, b;  // [cout, cin, k, k], [cout] (bf16: w holds the bf16 values)
};
class RefLinearBf16 : public PreparedLinear {
 public:
  std::vector<uint16_t> w;  // [out, in] bf16
  std::vector<float> b;
};
class RefLinearInt8 : public PreparedLinear {
 public:
  std::vector<int8_t> w;  // [out, in]
  std::vector<float> scale, b;
};

// The activations of a bf16 convolution rounded to bf16 (a test twin: allocates per call).
std::vector<float> rounded_bf16(const float* x, int64_t n) {
  std::vector<float> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[i] = ops::round_bf16(x[i]);
  return r;
}

// The high-pass projector; on reference-device its inputs are checked like any op's.
class RefSpectral : public SpectralPlan {
 public:
  RefSpectral(const float* m, int64_t hh, int64_t ww, bool device)
      : mask(m, m + hh * ww), device_(device) {
    h = hh;
    w = ww;
  }
  void highpass(const float* x, int64_t n, float* y) override {
    if (device_) {
      boundary().check(x, n * h * w, sizeof(float), "highpass", "x");
      boundary().check(y, n * h * w, sizeof(float), "highpass", "y");
    }
    ops::highpass(x, n, h, w, mask.data(), y);
  }
  std::vector<float> mask;  // the plan's own copy
  bool device_;
};

class ReferenceBackend final : public Backend {
 public:
  explicit ReferenceBackend(bool device) : device_(device) {}
  const char* name() const override { return device_ ? "reference-device" : "reference"; }

  bool host_visible() const override { return !device_; }
  Result<std::shared_ptr<BackendBuffer>> alloc(size_t bytes) const override {
    DUET_ASSIGN_OR_RETURN(std::shared_ptr<BackendBuffer> host, Backend::alloc(bytes));
    if (!device_) return host;
    // The registry entry dies with the memory: the wrapper's release unregisters, then drops
    // the host buffer it holds.
    void* p = host->data();
    boundary().add(p, bytes);
    return std::make_shared<BackendBuffer>(*this, p, bytes,
                                           [host](void* q) { boundary().remove(q); });
  }
  void upload(void* dst, const void* host_src, size_t bytes) const override {
    chk(dst, static_cast<int64_t>(bytes), 1, "upload", "dst");
    Backend::upload(dst, host_src, bytes);
  }
  void download(void* host_dst, const void* src, size_t bytes) const override {
    chk(src, static_cast<int64_t>(bytes), 1, "download", "src");
    Backend::download(host_dst, src, bytes);
  }
  void copy(void* dst, const void* src, size_t bytes) const override {
    chk(dst, static_cast<int64_t>(bytes), 1, "copy", "dst");
    chk(src, static_cast<int64_t>(bytes), 1, "copy", "src");
    Backend::copy(dst, src, bytes);
  }

  Result<std::unique_ptr<PreparedLinear>> prepare_linear(const float* w, const float* b,
                                                         int64_t out, int64_t in,
                                                         Activation act) const override {
    auto op = std::make_unique<RefLinear>();
    op->out = out;
    op->in = in;
    op->act = act;
    op->w.assign(w, w + out * in);
    if (b) op->b.assign(b, b + out);
    return std::unique_ptr<PreparedLinear>(std::move(op));
  }
  void linear(const PreparedLinear& p, const float* x, int64_t m, float* y) const override {
    f32s(x, m * p.in, "linear", "x");
    f32s(y, m * p.out, "linear", "y");
    if (p.precision == Precision::kBF16) {
      const auto& op = static_cast<const RefLinearBf16&>(p);
      ops::linear_bf16(x, op.w.data(), op.b.empty() ? nullptr : op.b.data(), m, op.in, op.out, y);
    } else if (p.precision == Precision::kInt8) {
      const auto& op = static_cast<const RefLinearInt8&>(p);
      ops::linear_int8(x, op.w.data(), op.scale.data(), op.b.empty() ? nullptr : op.b.data(), m,
                       op.in, op.out, y);
    } else {
      const auto& op = static_cast<const RefLinear&>(p);
      ops::linear(x, op.w.data(), op.b.empty() ? nullptr : op.b.data(), m, op.in, op.out, y);
    }
    apply_act(p.act, y, m * p.out);
  }
  Result<std::unique_ptr<PreparedLinear>> prepare_linear_weights(const LayerWeights& lw,
                                                                 const float* b, int64_t out,
                                                                 int64_t in,
                                                                 Activation act) const override {
    const size_t n = static_cast<size_t>(out * in);
    std::unique_ptr<PreparedLinear> op;
    if (lw.precision == Precision::kF32) return prepare_linear(lw.f32, b, out, in, act);
    if (lw.precision == Precision::kBF16) {
      auto r = std::make_unique<RefLinearBf16>();
      r->w.assign(lw.bf16, lw.bf16 + n);
      if (b) r->b.assign(b, b + out);
      op = std::move(r);
    } else {
      auto r = std::make_unique<RefLinearInt8>();
      r->w.assign(lw.s8, lw.s8 + n);
      r->scale.assign(lw.scale, lw.scale + out);
      // the weights the cpu backend uses on this CPU (7-bit without VNNI), so the twins agree
      DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
      if (!cpu->int8_vnni)
        ops::halve_int8_rows(r->w.data(), r->scale.data(), out, in, r->w.data(), r->scale.data());
      if (b) r->b.assign(b, b + out);
      op = std::move(r);
    }
    op->out = out;
    op->in = in;
    op->act = act;
    op->precision = lw.precision;
    return op;
  }

  Result<std::unique_ptr<PreparedConv>> prepare_conv_weights(const LayerWeights& lw, const float* b,
                                                             const ConvDesc& d) const override {
    if (lw.precision == Precision::kF32) return prepare_conv(lw.f32, b, d);
    if (lw.precision != Precision::kBF16)
      return unimplemented(std::string("convolution at precision ") + precision_name(lw.precision) +
                           " (supported: f32, bf16)");
    std::vector<float> w(static_cast<size_t>(d.cout * d.cin * d.k * d.k));
    ops::from_bf16(lw.bf16, static_cast<int64_t>(w.size()), w.data());
    auto r = prepare_conv(w.data(), b, d);
    if (r.is_ok()) r.value()->precision = Precision::kBF16;
    return r;
  }

  Result<std::unique_ptr<PreparedConv>> prepare_conv(const float* w, const float* b,
                                                     const ConvDesc& d) const override {
    auto op = std::make_unique<RefConv>();
    op->desc = d;
    op->w.assign(w, w + d.cout * d.cin * d.k * d.k);
    if (b) op->b.assign(b, b + d.cout);
    return std::unique_ptr<PreparedConv>(std::move(op));
  }
  void conv2d(const PreparedConv& p, const float* x, int64_t b, int64_t h, int64_t w,
              float* y) const override {
    const auto& op = static_cast<const RefConv&>(p);
    const ConvDesc& d = op.desc;
    const int64_t ho = (h + 2 * d.pad - d.k) / d.stride + 1,
                  wo = (w + 2 * d.pad - d.k) / d.stride + 1;
    f32s(x, b * d.cin * h * w, "conv2d", "x");
    f32s(y, b * d.cout * ho * wo, "conv2d", "y");
    std::vector<float> xr;
    if (op.precision == Precision::kBF16) {
      xr = rounded_bf16(x, b * d.cin * h * w);
      x = xr.data();
    }
    const float* bias = op.b.empty() ? nullptr : op.b.data();
    if (d.tokens_out) {
      ops::patch_embed(x, op.w.data(), bias, b, d.cin, h, w, d.cout, d.k, y);  // k == stride
    } else {
      ops::conv2d(x, op.w.data(), bias, b, d.cin, h, w, d.cout, d.k, d.k, d.stride, d.pad, y);
    }
    apply_act(d.act, y, b * d.cout * ho * wo);
  }

  void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                  float eps, float* y) const override {
    f32s(x, m * d, "layer_norm", "x");
    f32s(gamma, d, "layer_norm", "gamma");
    f32s(beta, d, "layer_norm", "beta");
    f32s(y, m * d, "layer_norm", "y");
    ops::layer_norm(x, m, d, gamma, beta, eps, y);
  }
  void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                           const float* shift, const float* scale, int64_t mod_stride,
                           float* y) const override {
    f32s(x, b * n * d, "layer_norm_modulate", "x");
    f32s(shift, (b - 1) * mod_stride + d, "layer_norm_modulate", "shift");
    f32s(scale, (b - 1) * mod_stride + d, "layer_norm_modulate", "scale");
    f32s(y, b * n * d, "layer_norm_modulate", "y");
    ops::layer_norm_modulate(x, b, n, d, eps, shift, scale, mod_stride, y);
  }
  void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                  const float* gamma, const float* beta, float eps, bool silu,
                  float* y) const override {
    f32s(x, b * c * hw, "group_norm", "x");
    f32s(gamma, c, "group_norm", "gamma");
    f32s(beta, c, "group_norm", "beta");
    f32s(y, b * c * hw, "group_norm", "y");
    ops::group_norm(x, b, c, hw, groups, gamma, beta, eps, silu, y);
  }
  void attention(const ops::AttentionArgs& a) const override {
    const int64_t width = a.heads * a.head_dim;
    f32s(a.q, (a.batch * a.nq - 1) * a.ldq + width, "attention", "q");
    f32s(a.k, (a.batch * a.nk - 1) * a.ldk + width, "attention", "k");
    f32s(a.v, (a.batch * a.nk - 1) * a.ldv + width, "attention", "v");
    f32s(a.out, (a.batch * a.nq - 1) * a.ldo + width, "attention", "out");
    chk(a.key_mask, a.batch * a.nk, 1, "attention", "key_mask");
    ops::attention(a);
  }
  void slab_attention(const ops::SlabAttentionArgs& a) const override {
    const int64_t width = a.heads * a.head_dim, rows = a.batch * a.gh * a.gw;
    f32s(a.q, (rows - 1) * a.ldq + width, "slab_attention", "q");
    f32s(a.k, (rows - 1) * a.ldk + width, "slab_attention", "k");
    f32s(a.v, (rows - 1) * a.ldv + width, "slab_attention", "v");
    f32s(a.dwc_w, a.head_dim * a.kernel * a.kernel, "slab_attention", "dwc_w");
    f32s(a.dwc_b, a.head_dim, "slab_attention", "dwc_b");
    f32s(a.out, (rows - 1) * a.ldo + width, "slab_attention", "out");
    f32s(a.scratch, slab_scratch_floats(a.batch, a.heads, a.head_dim, a.kernel), "slab_attention",
         "scratch");
    ops::slab_attention(a);
  }
  void cswin_attention(const ops::CswinAttentionArgs& a) const override {
    const int64_t width = a.heads * a.head_dim, rows = a.batch * a.gh * a.gw;
    f32s(a.q, (rows - 1) * a.ldq + width, "cswin_attention", "q");
    f32s(a.k, (rows - 1) * a.ldk + width, "cswin_attention", "k");
    f32s(a.v, (rows - 1) * a.ldv + width, "cswin_attention", "v");
    f32s(a.lepe_w, width * a.kernel * a.kernel, "cswin_attention", "lepe_w");
    f32s(a.lepe_b, width, "cswin_attention", "lepe_b");
    f32s(a.out, (rows - 1) * a.ldo + width, "cswin_attention", "out");
    f32s(a.scratch,
         cswin_scratch_floats(a.batch, a.heads, a.head_dim, a.gh, a.gw, a.stripe, a.kernel),
         "cswin_attention", "scratch");
    ops::cswin_attention(a);
  }
  void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
              int64_t k, int64_t s, float* scratch, float* y) const override {
    f32s(x, b * c * h * w, "carafe", "x");
    f32s(enc, b * s * s * k * k * h * w, "carafe", "enc");
    f32s(scratch, carafe_scratch_floats(b, c, h, w, k, s), "carafe", "scratch");
    f32s(y, b * c * h * s * w * s, "carafe", "y");
    ops::carafe(x, enc, b, c, h, w, k, s, scratch, y);
  }
  Result<std::unique_ptr<SpectralPlan>> plan_spectral(int64_t h, int64_t w,
                                                      const float* mask) const override {
    return std::unique_ptr<SpectralPlan>(std::make_unique<RefSpectral>(mask, h, w, device_));
  }

  void add(float* x, const float* y, int64_t outer, int64_t n) const override {
    f32s(x, outer * n, "add", "x");
    f32s(y, n, "add", "y");
    ops::add_broadcast(x, y, outer, n);
  }
  void add_gated_rows(float* x, const float* y, const float* g, int64_t gstride, int64_t b,
                      int64_t n, int64_t d) const override {
    f32s(x, b * n * d, "add_gated_rows", "x");
    f32s(y, b * n * d, "add_gated_rows", "y");
    f32s(g, (b - 1) * gstride + d, "add_gated_rows", "g");
    ops::add_gated_rows(x, y, g, gstride, b, n, d);
  }
  void silu(const float* x, float* y, int64_t n) const override {
    f32s(x, n, "silu", "x");
    f32s(y, n, "silu", "y");
    ops::silu_copy(x, y, n);
  }
  void modulate(const float* x, int64_t b, int64_t n, int64_t d, const float* shift,
                const float* scale, int64_t mod_stride, float* y) const override {
    f32s(x, b * n * d, "modulate", "x");
    f32s(shift, (b - 1) * mod_stride + d, "modulate", "shift");
    f32s(scale, (b - 1) * mod_stride + d, "modulate", "scale");
    f32s(y, b * n * d, "modulate", "y");
    ops::modulate(x, b, n, d, shift, scale, mod_stride, y);
  }
  void film(float* h, const float* scale, const float* shift, int64_t mstride, int64_t b, int64_t c,
            int64_t hw) const override {
    f32s(h, b * c * hw, "film", "h");
    f32s(scale, (b - 1) * mstride + c, "film", "scale");
    f32s(shift, (b - 1) * mstride + c, "film", "shift");
    ops::film(h, scale, shift, mstride, b, c, hw);
  }
  void gated_film(float* h, const float* scale, const float* shift, const float* g, int64_t mstride,
                  int64_t b, int64_t c, int64_t hw) const override {
    f32s(h, b * c * hw, "gated_film", "h");
    f32s(scale, (b - 1) * mstride + c, "gated_film", "scale");
    f32s(shift, (b - 1) * mstride + c, "gated_film", "shift");
    f32s(g, (b - 1) * mstride + c, "gated_film", "g");
    ops::gated_film(h, scale, shift, g, mstride, b, c, hw);
  }
  void concat_channels(const float* a, int64_t ca, const float* bsrc, int64_t cb, int64_t batch,
                       int64_t hw, float* y) const override {
    f32s(a, batch * ca * hw, "concat_channels", "a");
    f32s(bsrc, batch * cb * hw, "concat_channels", "b");
    f32s(y, batch * (ca + cb) * hw, "concat_channels", "y");
    ops::concat_channels(a, ca, bsrc, cb, batch, hw, y);
  }
  void concat_broadcast(const float* a, int64_t ca, const float* m, int64_t cm, int64_t batch,
                        int64_t hw, float* y) const override {
    f32s(a, batch * ca * hw, "concat_broadcast", "a");
    f32s(m, batch * cm, "concat_broadcast", "m");
    f32s(y, batch * (ca + cm) * hw, "concat_broadcast", "y");
    ops::concat_broadcast(a, ca, m, cm, batch, hw, y);
  }
  void dual_attention(float* h, const float* ac, const float* as, int64_t b, int64_t c,
                      int64_t hw) const override {
    f32s(h, b * c * hw, "dual_attention", "h");
    f32s(ac, b * c, "dual_attention", "ac");
    f32s(as, b * c * hw, "dual_attention", "as");
    ops::dual_attention(h, ac, as, b, c, hw);
  }
  void fuse(const float* eps_s, const float* hp_s, const float* eps_d, const float* alpha,
            int64_t b, int64_t per, float* eps) const override {
    f32s(eps_s, b * per, "fuse", "eps_s");
    f32s(hp_s, b * per, "fuse", "hp_s");
    f32s(eps_d, b * per, "fuse", "eps_d");
    f32s(alpha, b, "fuse", "alpha");
    f32s(eps, b * per, "fuse", "eps");
    ops::fuse(eps_s, hp_s, eps_d, alpha, b, per, eps);
  }
  void global_avg_pool(const float* x, int64_t b, int64_t c, int64_t hw, float* y) const override {
    f32s(x, b * c * hw, "global_avg_pool", "x");
    f32s(y, b * c, "global_avg_pool", "y");
    ops::global_avg_pool(x, b, c, hw, y);
  }
  void timestep_sinusoid(const float* t, int64_t b, int64_t dim, double max_period,
                         float* y) const override {
    f32s(t, b, "timestep_sinusoid", "t");
    f32s(y, b * dim, "timestep_sinusoid", "y");
    ops::timestep_sinusoid(t, b, dim, max_period, y);
  }
  void unpatchify(const float* y, int64_t b, int64_t gh, int64_t gw, int64_t p, int64_t c,
                  float* out) const override {
    f32s(y, b * gh * gw * p * p * c, "unpatchify", "y");
    f32s(out, b * gh * gw * p * p * c, "unpatchify", "out");
    ops::unpatchify(y, b, gh, gw, p, c, out);
  }
  void embed_tokens(const int64_t* ids, const float* tok, const float* pos, int64_t b, int64_t l,
                    int64_t d, float* x) const override {
    chk(ids, b * l, sizeof(int64_t), "embed_tokens", "ids");
    f32s(tok, d, "embed_tokens", "tok");  // its first row (the vocabulary size is not passed)
    f32s(pos, l * d, "embed_tokens", "pos");
    f32s(x, b * l * d, "embed_tokens", "x");
    ops::embed_tokens(ids, tok, pos, b, l, d, x);
  }
  void masked_mean(const float* e, const uint8_t* mask, int64_t b, int64_t l, int64_t d,
                   float* p) const override {
    f32s(e, b * l * d, "masked_mean", "e");
    chk(mask, b * l, 1, "masked_mean", "mask");
    f32s(p, b * d, "masked_mean", "p");
    ops::masked_mean(e, mask, b, l, d, p);
  }

 private:
  void chk(const void* p, int64_t n, size_t elem, const char* op, const char* arg) const {
    if (device_) boundary().check(p, n, elem, op, arg);
  }
  void f32s(const void* p, int64_t n, const char* op, const char* arg) const {
    chk(p, n, sizeof(float), op, arg);
  }
  bool device_;
};

}  // namespace

const Backend& reference_backend() {
  static const ReferenceBackend backend(false);
  return backend;
}

const Backend& reference_device_backend() {
  static const ReferenceBackend backend(true);
  return backend;
}

BoundaryViolations reference_device_violations() { return boundary().violations(); }
void reset_reference_device_violations() { boundary().reset(); }

}  // namespace duet
