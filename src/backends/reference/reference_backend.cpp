// The reference backend: every op forwards to duet::ops (naive, single-threaded, double
// accumulation). Weights are copied so the prepared op owns them.
#include <vector>

#include "backends/backend.h"
#include "duet/cpu_features.h"
#include "ops/lowp.h"

namespace duet {
namespace {

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

class RefSpectral : public SpectralPlan {
 public:
  explicit RefSpectral(const float* m, int64_t hh, int64_t ww) : mask(m, m + hh * ww) {
    h = hh;
    w = ww;
  }
  void highpass(const float* x, int64_t n, float* y) override {
    ops::highpass(x, n, h, w, mask.data(), y);
  }
  std::vector<float> mask;
};

class ReferenceBackend final : public Backend {
 public:
  const char* name() const override { return "reference"; }

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
    const int64_t ho = (h + 2 * d.pad - d.k) / d.stride + 1,
                  wo = (w + 2 * d.pad - d.k) / d.stride + 1;
    apply_act(d.act, y, b * d.cout * ho * wo);
  }

  void layer_norm(const float* x, int64_t m, int64_t d, const float* gamma, const float* beta,
                  float eps, float* y) const override {
    ops::layer_norm(x, m, d, gamma, beta, eps, y);
  }
  void layer_norm_modulate(const float* x, int64_t b, int64_t n, int64_t d, float eps,
                           const float* shift, const float* scale, int64_t mod_stride,
                           float* y) const override {
    ops::layer_norm_modulate(x, b, n, d, eps, shift, scale, mod_stride, y);
  }
  void group_norm(const float* x, int64_t b, int64_t c, int64_t hw, int64_t groups,
                  const float* gamma, const float* beta, float eps, bool silu,
                  float* y) const override {
    ops::group_norm(x, b, c, hw, groups, gamma, beta, eps, silu, y);
  }
  void attention(const ops::AttentionArgs& a) const override { ops::attention(a); }
  void carafe(const float* x, const float* enc, int64_t b, int64_t c, int64_t h, int64_t w,
              int64_t k, int64_t s, float* scratch, float* y) const override {
    ops::carafe(x, enc, b, c, h, w, k, s, scratch, y);
  }
  Result<std::unique_ptr<SpectralPlan>> plan_spectral(int64_t h, int64_t w,
                                                      const float* mask) const override {
    return std::unique_ptr<SpectralPlan>(std::make_unique<RefSpectral>(mask, h, w));
  }
};

}  // namespace

const Backend& reference_backend() {
  static const ReferenceBackend backend;
  return backend;
}

}  // namespace duet
