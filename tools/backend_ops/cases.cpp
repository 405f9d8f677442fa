// The case table of duet_backend_ops: every Backend op at the shapes a model of each given
// config runs (batch 2, as classifier-free guidance uses), plus awkward ones — one row, sizes
// that are not multiples of 8 / 16 / 64, long sequences, the text length 77.
//
// NMSE bounds (against the reference backend, same precision):
//   elementwise glue, copies, embeddings      0      (the same float expressions: bit-exact)
//   norms, pooling                            1e-12  (float vs double accumulation)
//   f32 linear / conv / attention / CARAFE    1e-10  (oneDNN / tiled kernels, fp32 sums)
//   high-pass (FFTW fp32 vs double DFT)       1e-10
//   bf16 linear / conv                        1e-8   (both round x and W to bf16 alike; sums
//                                                     differ in order only)
//   int8 linear                               1e-6   (same quantisation; fp32 vs double
//                                                     dequantisation)
// Observed values are printed by `duet_backend_ops test` (docs/backend-ops.md): the bounds sit
// two or more orders of magnitude above them and far below what a wrong index gives (~1e-2..1).
#include <cmath>
#include <cstdarg>
#include <cstdio>

#include "duet/config.h"
#include "harness.h"
#include "ops/lowp.h"
#include "ops/ops.h"

namespace duet::backend_ops {
namespace {

constexpr double kExact = 0, kNorm = 1e-12, kF32 = 1e-10, kBf16 = 1e-8, kInt8 = 1e-6;

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

const char* act_name(Activation a) {
  switch (a) {
    case Activation::kNone:
      return "none";
    case Activation::kGeluTanh:
      return "gelu";
    case Activation::kSilu:
      return "silu";
    case Activation::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

uint32_t g_seed = 1;

// Weights at `p` for a prepare_*_weights call (the vectors must outlive it).
struct LowpWeights {
  std::vector<uint16_t> bf16;
  std::vector<int8_t> s8;
  std::vector<float> scale;
  LayerWeights lw;
  LowpWeights(const std::vector<float>& w, int64_t out, int64_t in, Precision p) {
    lw.precision = p;
    if (p == Precision::kF32) lw.f32 = w.data();
    if (p == Precision::kBF16) {
      bf16.resize(w.size());
      ops::to_bf16(w.data(), static_cast<int64_t>(w.size()), bf16.data());
      lw.bf16 = bf16.data();
    }
    if (p == Precision::kInt8) {
      s8.resize(w.size());
      scale.resize(static_cast<size_t>(out));
      ops::quantize_rows_int8(w.data(), out, in, s8.data(), scale.data());
      lw.s8 = s8.data();
      lw.scale = scale.data();
    }
  }
};

void linear(std::vector<Case>& cs, const std::string& tag, int64_t m, int64_t in, int64_t out,
            Activation act) {
  const auto w = randu(out * in, g_seed++, -0.3f, 0.3f), b = randu(out, g_seed++),
             x = randu(m * in, g_seed++);
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kInt8}) {
    Case c;
    c.op = "linear";
    c.shape = fmt("%s m=%lld in=%lld out=%lld %s", tag.c_str(), (long long)m, (long long)in,
                  (long long)out, act_name(act));
    c.precision = p;
    c.bound = p == Precision::kF32 ? kF32 : p == Precision::kBF16 ? kBf16 : kInt8;
    c.flops = 2.0 * m * in * out;
    c.bytes = 4.0 * (m * in + m * out);
    c.setup = [=](const Backend& be, Arena& a) -> Status {
      LowpWeights lw(w, out, in, p);
      DUET_ASSIGN_OR_RETURN(std::unique_ptr<PreparedLinear> op,
                            be.prepare_linear_weights(lw.lw, b.data(), out, in, act));
      std::shared_ptr<PreparedLinear> sop(std::move(op));
      const float* xd = a.in(x);
      float* y = a.out(m * out);
      DUET_RETURN_IF_ERROR(a.status);
      a.bound.keep.push_back(sop);
      a.bound.call = [&be, sop, xd, m, y] { be.linear(*sop, xd, m, y); };
      return Status::ok();
    };
    cs.push_back(std::move(c));
  }
}

void conv(std::vector<Case>& cs, const std::string& tag, int64_t b, int64_t cin, int64_t h,
          int64_t wd, ConvDesc d) {
  const auto w = randu(d.cout * cin * d.k * d.k, g_seed++, -0.3f, 0.3f),
             bias = randu(d.cout, g_seed++), x = randu(b * cin * h * wd, g_seed++);
  d.cin = cin;
  const int64_t ho = (h + 2 * d.pad - d.k) / d.stride + 1,
                wo = (wd + 2 * d.pad - d.k) / d.stride + 1;
  for (Precision p : {Precision::kF32, Precision::kBF16}) {
    Case c;
    c.op = "conv2d";
    c.shape =
        fmt("%s b=%lld %lldx%lldx%lld -> %lld k=%lld s=%lld p=%lld%s %s", tag.c_str(), (long long)b,
            (long long)cin, (long long)h, (long long)wd, (long long)d.cout, (long long)d.k,
            (long long)d.stride, (long long)d.pad, d.tokens_out ? " tokens" : "", act_name(d.act));
    c.precision = p;
    c.bound = p == Precision::kF32 ? kF32 : kBf16;
    c.flops = 2.0 * b * d.cout * ho * wo * cin * d.k * d.k;
    c.bytes = 4.0 * (b * cin * h * wd + b * d.cout * ho * wo);
    c.setup = [=](const Backend& be, Arena& a) -> Status {
      LowpWeights lw(w, d.cout, cin * d.k * d.k, p);
      DUET_ASSIGN_OR_RETURN(std::unique_ptr<PreparedConv> op,
                            be.prepare_conv_weights(lw.lw, bias.data(), d));
      std::shared_ptr<PreparedConv> sop(std::move(op));
      const float* xd = a.in(x);
      float* y = a.out(b * d.cout * ho * wo);
      DUET_RETURN_IF_ERROR(a.status);
      a.bound.keep.push_back(sop);
      a.bound.call = [&be, sop, xd, b, h, wd, y] { be.conv2d(*sop, xd, b, h, wd, y); };
      return Status::ok();
    };
    cs.push_back(std::move(c));
  }
}

// A case of a weightless f32 op: `bind(be, arena)` returns the call.
template <class Bind>
void plain(std::vector<Case>& cs, const char* op, std::string shape, double bound, double bytes,
           double flops, Bind bind) {
  Case c;
  c.op = op;
  c.shape = std::move(shape);
  c.bound = bound;
  c.bytes = bytes;
  c.flops = flops;
  c.setup = [bind](const Backend& be, Arena& a) -> Status {
    std::function<void()> call = bind(be, a);
    DUET_RETURN_IF_ERROR(a.status);
    a.bound.call = std::move(call);
    return Status::ok();
  };
  cs.push_back(std::move(c));
}

void attention(std::vector<Case>& cs, const std::string& tag, int64_t batch, int64_t heads,
               int64_t nq, int64_t nk, int64_t dh, bool packed, bool masked) {
  const int64_t width = heads * dh, ld = packed ? 3 * width : width;
  // packed: q, k, v interleaved in one [B, N, 3D] array (self-attention); else separate.
  const auto q = randu(batch * nq * ld, g_seed++), kv = randu(batch * nk * ld * 2, g_seed++);
  std::vector<uint8_t> mask(static_cast<size_t>(batch * nk), 1);
  if (masked)
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t j = 1 + b; j < nk; j += 2 + b) mask[b * nk + j] = 0;  // key 0 always real
  plain(cs, "attention",
        fmt("%s B=%lld heads=%lld nq=%lld nk=%lld dh=%lld%s%s", tag.c_str(), (long long)batch,
            (long long)heads, (long long)nq, (long long)nk, (long long)dh,
            packed ? " packed-qkv" : "", masked ? " key-mask" : ""),
        kF32, 4.0 * batch * (2 * nq + 2 * nk) * width, 4.0 * batch * heads * nq * nk * dh,
        [=](const Backend& be, Arena& a) {
          ops::AttentionArgs args;
          const float* qd = a.in(q);
          const float* kvd = a.in(kv);
          args.q = qd;
          args.k = packed ? qd + width : kvd;
          args.v = packed ? qd + 2 * width : kvd + batch * nk * ld;
          args.ldq = args.ldk = args.ldv = ld;
          args.key_mask =
              masked ? static_cast<const uint8_t*>(a.bytes(mask.data(), mask.size())) : nullptr;
          args.out = a.out(batch * nq * width);
          args.ldo = width;
          args.batch = batch;
          args.heads = heads;
          args.nq = nq;
          args.nk = packed ? nq : nk;
          args.head_dim = dh;
          return std::function<void()>([&be, args] { be.attention(args); });
        });
}

// SLAB linear attention over a gh x gw token grid, q/k/v packed [B, N, 3D] as the backbone has
// them. The scratch is guarded (overruns are caught) but not compared: its layout is the backend's.
void slab(std::vector<Case>& cs, const std::string& tag, int64_t batch, int64_t heads, int64_t gh,
          int64_t gw, int64_t dh, int64_t kernel) {
  const int64_t width = heads * dh, ld = 3 * width, n = gh * gw;
  const auto qkv = randu(batch * n * ld, g_seed++), w = randu(dh * kernel * kernel, g_seed++),
             bias = randu(dh, g_seed++);
  plain(cs, "slab_attention",
        fmt("%s B=%lld heads=%lld grid=%lldx%lld dh=%lld k=%lld", tag.c_str(), (long long)batch,
            (long long)heads, (long long)gh, (long long)gw, (long long)dh, (long long)kernel),
        kF32, 4.0 * batch * n * 4 * width,
        batch * heads * n * (4.0 * dh * dh + 2.0 * dh * kernel * kernel),
        [=](const Backend& be, Arena& a) {
          ops::SlabAttentionArgs args;
          const float* qd = a.in(qkv);
          args.q = qd;
          args.k = qd + width;
          args.v = qd + 2 * width;
          args.ldq = args.ldk = args.ldv = ld;
          args.dwc_w = a.in(w);
          args.dwc_b = a.in(bias);
          args.out = a.out(batch * n * width);
          args.ldo = width;
          const std::vector<float> zeros(
              static_cast<size_t>(be.slab_scratch_floats(batch, heads, dh, kernel)));
          args.scratch = const_cast<float*>(a.in(zeros));
          args.batch = batch;
          args.heads = heads;
          args.gh = gh;
          args.gw = gw;
          args.head_dim = dh;
          args.kernel = kernel;
          return std::function<void()>([&be, args] { be.slab_attention(args); });
        });
}

// CSWin stripe attention over a gh x gw grid (q/k/v packed [B, N, 3D]); ragged stripes when
// `stripe` does not divide the grid. Scratch guarded, not compared (the backend's layout).
void cswin(std::vector<Case>& cs, const std::string& tag, int64_t batch, int64_t heads, int64_t gh,
           int64_t gw, int64_t dh, int64_t stripe, int64_t kernel) {
  const int64_t width = heads * dh, ld = 3 * width, n = gh * gw;
  const auto qkv = randu(batch * n * ld, g_seed++), w = randu(width * kernel * kernel, g_seed++),
             bias = randu(width, g_seed++);
  const double win = static_cast<double>(stripe) * (gh + gw) / 2.0;  // keys per query, about
  plain(cs, "cswin_attention",
        fmt("%s B=%lld heads=%lld grid=%lldx%lld dh=%lld stripe=%lld k=%lld", tag.c_str(),
            (long long)batch, (long long)heads, (long long)gh, (long long)gw, (long long)dh,
            (long long)stripe, (long long)kernel),
        kF32, 4.0 * batch * n * 4 * width, batch * n * width * (4.0 * win + 2.0 * kernel * kernel),
        [=](const Backend& be, Arena& a) {
          ops::CswinAttentionArgs args;
          const float* qd = a.in(qkv);
          args.q = qd;
          args.k = qd + width;
          args.v = qd + 2 * width;
          args.ldq = args.ldk = args.ldv = ld;
          args.lepe_w = a.in(w);
          args.lepe_b = a.in(bias);
          args.out = a.out(batch * n * width);
          args.ldo = width;
          const std::vector<float> zeros(static_cast<size_t>(
              be.cswin_scratch_floats(batch, heads, dh, gh, gw, stripe, kernel)));
          args.scratch = const_cast<float*>(a.in(zeros));
          args.batch = batch;
          args.heads = heads;
          args.gh = gh;
          args.gw = gw;
          args.head_dim = dh;
          args.stripe = stripe;
          args.kernel = kernel;
          return std::function<void()>([&be, args] { be.cswin_attention(args); });
        });
}

void model_shapes(std::vector<Case>& cs, const std::string& tag, const ModelConfig& cfg) {
  const int64_t B = 2, D = cfg.backbone.width, N = cfg.tokens(), hid = D * cfg.backbone.mlp_ratio;
  const int64_t Dt = cfg.text.width, L = cfg.text.max_length, C = cfg.image.channels;
  const int64_t H = cfg.image.height, W = cfg.image.width, p = cfg.backbone.patch;
  const int64_t c0 = cfg.refiner.base_channels, G = cfg.refiner.groups;
  const int64_t hw = H * W, per = C * hw;
  linear(cs, tag + " qkv", B * N, D, 3 * D, Activation::kNone);
  linear(cs, tag + " fc1", B * N, D, hid, Activation::kGeluTanh);
  linear(cs, tag + " ada", B, D, 6 * D, Activation::kNone);
  linear(cs, tag + " text", B * L, Dt, 3 * Dt, Activation::kNone);
  linear(cs, tag + " sem", B, Dt, D, Activation::kSigmoid);
  linear(cs, tag + " t_fc1", B, kTimeEmbedDim, D, Activation::kSilu);
  ConvDesc patch{D, C, p, p, 0, true, Activation::kNone};
  conv(cs, tag + " patch", B, C, H, W, patch);
  conv(cs, tag + " conv3", B, c0, H, W, ConvDesc{c0, c0, 3, 1, 1, false, Activation::kNone});
  conv(cs, tag + " down", B, c0, H, W, ConvDesc{c0, c0, 3, 2, 1, false, Activation::kNone});
  conv(cs, tag + " att_s", B, c0, H, W, ConvDesc{c0, c0, 1, 1, 0, false, Activation::kSigmoid});
  attention(cs, tag + " self", B, cfg.backbone.heads, N, N, D / cfg.backbone.heads, true, false);
  attention(cs, tag + " cross", B, cfg.backbone.heads, N, L, D / cfg.backbone.heads, false, true);
  attention(cs, tag + " text", B, cfg.text.heads, L, L, Dt / cfg.text.heads, true, true);
  slab(cs, tag + " self", B, cfg.backbone.heads, H / p, W / p, D / cfg.backbone.heads,
       cfg.backbone.slab_kernel);
  cswin(cs, tag + " self", B, cfg.backbone.heads, H / p, W / p, D / cfg.backbone.heads,
        cfg.backbone.cswin_stripe, cfg.backbone.cswin_kernel);

  const auto x = randu(B * N * D, g_seed++), mod = randu(B * 6 * D, g_seed++),
             gam = randu(D, g_seed++), bet = randu(D, g_seed++);
  plain(cs, "layer_norm", fmt("%s m=%lld d=%lld", tag.c_str(), (long long)(B * N), (long long)D),
        kNorm, 8.0 * B * N * D, 0, [=](const Backend& be, Arena& a) {
          const float *xd = a.in(x), *g = a.in(gam), *bb = a.in(bet);
          float* y = a.out(B * N * D);
          return std::function<void()>(
              [&be, xd, g, bb, y, B, N, D] { be.layer_norm(xd, B * N, D, g, bb, 1e-6f, y); });
        });
  plain(cs, "layer_norm_modulate",
        fmt("%s b=%lld n=%lld d=%lld stride=%lld", tag.c_str(), (long long)B, (long long)N,
            (long long)D, (long long)(6 * D)),
        kNorm, 8.0 * B * N * D, 0, [=](const Backend& be, Arena& a) {
          const float *xd = a.in(x), *m = a.in(mod);
          float* y = a.out(B * N * D);
          return std::function<void()>([&be, xd, m, y, B, N, D] {
            be.layer_norm_modulate(xd, B, N, D, 1e-6f, m + D, m + 2 * D, 6 * D, y);
          });
        });
  plain(cs, "modulate",
        fmt("%s b=%lld n=%lld d=%lld stride=%lld", tag.c_str(), (long long)B, (long long)N,
            (long long)D, (long long)(6 * D)),
        kExact, 8.0 * B * N * D, 0, [=](const Backend& be, Arena& a) {
          const float *xd = a.in(x), *m = a.in(mod);
          float* y = a.out(B * N * D);
          return std::function<void()>(
              [&be, xd, m, y, B, N, D] { be.modulate(xd, B, N, D, m + D, m + 2 * D, 6 * D, y); });
        });
  const auto xi = randu(B * c0 * hw, g_seed++), gg = randu(c0, g_seed++), gb = randu(c0, g_seed++);
  for (bool silu : {false, true})
    plain(cs, "group_norm",
          fmt("%s b=%lld c=%lld hw=%lld groups=%lld%s", tag.c_str(), (long long)B, (long long)c0,
              (long long)hw, (long long)G, silu ? " silu" : ""),
          kNorm, 8.0 * B * c0 * hw, 0, [=](const Backend& be, Arena& a) {
            const float *xd = a.in(xi), *g = a.in(gg), *bb = a.in(gb);
            float* y = a.out(B * c0 * hw);
            return std::function<void()>([&be, xd, g, bb, y, B, c0, hw, G, silu] {
              be.group_norm(xd, B, c0, hw, G, g, bb, 1e-5f, silu, y);
            });
          });
  // CARAFE at the refiner's deepest upsampling.
  const auto& cf = cfg.refiner.carafe;
  const int64_t hl = H / 2, wl = W / 2, kk = cf.k_up, s = cf.scale, ch = c0 * 2;
  const auto cx = randu(B * ch * hl * wl, g_seed++),
             enc = randu(B * s * s * kk * kk * hl * wl, g_seed++);
  plain(cs, "carafe",
        fmt("%s b=%lld c=%lld %lldx%lld k=%lld s=%lld", tag.c_str(), (long long)B, (long long)ch,
            (long long)hl, (long long)wl, (long long)kk, (long long)s),
        kF32, 4.0 * B * ch * hl * wl * (1 + s * s), 2.0 * B * ch * hl * s * wl * s * kk * kk,
        [=](const Backend& be, Arena& a) {
          const float *xd = a.in(cx), *e = a.in(enc);
          float* scratch = a.out(be.carafe_scratch_floats(B, ch, hl, wl, kk, s));
          a.bound.outputs.pop_back();  // scratch contents are the backend's own business
          float* y = a.out(B * ch * hl * s * wl * s);
          return std::function<void()>([&be, xd, e, scratch, y, B, ch, hl, wl, kk, s] {
            be.carafe(xd, e, B, ch, hl, wl, kk, s, scratch, y);
          });
        });
  // The FFT high-pass on a plan (refined rows x channels images).
  const auto img = randu(B * per, g_seed++);
  plain(cs, "highpass",
        fmt("%s n=%lld %lldx%lld", tag.c_str(), (long long)(B * C), (long long)H, (long long)W),
        kF32, 8.0 * B * per, 0, [=](const Backend& be, Arena& a) {
          const std::vector<float> mask =
              ops::highpass_mask(H, W, cfg.highpass.rho_c, cfg.highpass.tau);
          auto plan = be.plan_spectral(H, W, mask.data());
          if (!plan.is_ok()) {
            a.status = plan.status();
            return std::function<void()>();
          }
          std::shared_ptr<SpectralPlan> sp(std::move(plan).value());
          a.bound.keep.push_back(sp);
          const float* xd = a.in(img);
          float* y = a.out(B * per);
          return std::function<void()>([sp, xd, y, B, C] { sp->highpass(xd, B * C, y); });
        });

  // Elementwise glue at the model's sizes.
  const auto h0 = randu(B * N * D, g_seed++), y0 = randu(B * N * D, g_seed++),
             pos = randu(N * D, g_seed++);
  const std::string sz =
      fmt("%s b=%lld n=%lld d=%lld", tag.c_str(), (long long)B, (long long)N, (long long)D);
  plain(cs, "add", sz + " broadcast", kExact, 12.0 * B * N * D, 0,
        [=](const Backend& be, Arena& a) {
          float* x = a.inout(h0);
          a.bound.outputs.push_back(a.bound.own.back().get());
          const float* y = a.in(pos);
          return std::function<void()>([&be, x, y, B, N, D] { be.add(x, y, B, N * D); });
        });
  plain(cs, "add", sz + " plain", kExact, 12.0 * B * N * D, 0, [=](const Backend& be, Arena& a) {
    float* x = a.inout(h0);
    a.bound.outputs.push_back(a.bound.own.back().get());
    const float* y = a.in(y0);
    return std::function<void()>([&be, x, y, B, N, D] { be.add(x, y, 1, B * N * D); });
  });
  for (bool gated : {true, false})
    plain(cs, "add_gated_rows", sz + (gated ? " gated" : " ungated"), kExact, 12.0 * B * N * D, 0,
          [=](const Backend& be, Arena& a) {
            float* x = a.inout(h0);
            a.bound.outputs.push_back(a.bound.own.back().get());
            const float *y = a.in(y0), *g = gated ? a.in(mod) + 2 * D : nullptr;
            return std::function<void()>(
                [&be, x, y, g, B, N, D] { be.add_gated_rows(x, y, g, 6 * D, B, N, D); });
          });
  plain(cs, "silu", sz, kExact, 8.0 * B * N * D, 0, [=](const Backend& be, Arena& a) {
    const float* x = a.in(h0);
    float* y = a.out(B * N * D);
    return std::function<void()>([&be, x, y, B, N, D] { be.silu(x, y, B * N * D); });
  });
  const auto hc = randu(B * c0 * hw, g_seed++), tp = randu(B * 3 * c0, g_seed++),
             sm = randu(B * c0 * hw, g_seed++, 0.f, 1.f);
  const std::string szc =
      fmt("%s b=%lld c=%lld hw=%lld", tag.c_str(), (long long)B, (long long)c0, (long long)hw);
  plain(cs, "film", szc, kExact, 8.0 * B * c0 * hw, 0, [=](const Backend& be, Arena& a) {
    float* h = a.inout(hc);
    a.bound.outputs.push_back(a.bound.own.back().get());
    const float* t = a.in(tp);
    return std::function<void()>(
        [&be, h, t, B, c0, hw] { be.film(h, t, t + c0, 3 * c0, B, c0, hw); });
  });
  plain(cs, "gated_film", szc, kExact, 8.0 * B * c0 * hw, 0, [=](const Backend& be, Arena& a) {
    float* h = a.inout(hc);
    a.bound.outputs.push_back(a.bound.own.back().get());
    const float* t = a.in(tp);
    return std::function<void()>(
        [&be, h, t, B, c0, hw] { be.gated_film(h, t, t + c0, t + 2 * c0, 3 * c0, B, c0, hw); });
  });
  plain(cs, "dual_attention", szc, kExact, 12.0 * B * c0 * hw, 0, [=](const Backend& be, Arena& a) {
    float* h = a.inout(hc);
    a.bound.outputs.push_back(a.bound.own.back().get());
    const float *ac = a.in(tp), *as = a.in(sm);
    return std::function<void()>(
        [&be, h, ac, as, B, c0, hw] { be.dual_attention(h, ac, as, B, c0, hw); });
  });
  plain(cs, "concat_channels", szc + fmt(" + %lld", (long long)C), kExact, 8.0 * B * (c0 + C) * hw,
        0, [=](const Backend& be, Arena& a) {
          const float *x = a.in(hc), *e = a.in(img);
          float* y = a.out(B * (c0 + C) * hw);
          return std::function<void()>(
              [&be, x, e, y, B, c0, C, hw] { be.concat_channels(x, c0, e, C, B, hw, y); });
        });
  const int64_t ct = cfg.refiner.time_channels;
  plain(cs, "concat_broadcast", szc + fmt(" + %lld", (long long)ct), kExact,
        8.0 * B * (c0 + ct) * hw, 0, [=](const Backend& be, Arena& a) {
          const float *x = a.in(hc), *m = a.in(tp);
          float* y = a.out(B * (c0 + ct) * hw);
          return std::function<void()>(
              [&be, x, m, y, B, c0, ct, hw] { be.concat_broadcast(x, c0, m, ct, B, hw, y); });
        });
  const auto e1 = randu(B * per, g_seed++), e2 = randu(B * per, g_seed++),
             al = randu(B, g_seed++, 0.f, 1.f);
  plain(cs, "fuse", fmt("%s b=%lld per=%lld", tag.c_str(), (long long)B, (long long)per), kExact,
        16.0 * B * per, 0, [=](const Backend& be, Arena& a) {
          const float *es = a.in(img), *hp = a.in(e1), *ed = a.in(e2), *alpha = a.in(al);
          float* y = a.out(B * per);
          return std::function<void()>(
              [&be, es, hp, ed, alpha, y, B, per] { be.fuse(es, hp, ed, alpha, B, per, y); });
        });
  plain(cs, "global_avg_pool", szc, kNorm, 4.0 * B * c0 * hw, 0, [=](const Backend& be, Arena& a) {
    const float* x = a.in(hc);
    float* y = a.out(B * c0);
    return std::function<void()>([&be, x, y, B, c0, hw] { be.global_avg_pool(x, B, c0, hw, y); });
  });
  const std::vector<float> ts = {999.f, 0.f, 517.25f};
  plain(cs, "timestep_sinusoid", fmt("b=3 dim=%lld", (long long)kTimeEmbedDim), kExact, 0, 0,
        [=](const Backend& be, Arena& a) {
          const float* t = a.in(ts);
          float* y = a.out(3 * kTimeEmbedDim);
          return std::function<void()>(
              [&be, t, y] { be.timestep_sinusoid(t, 3, kTimeEmbedDim, 10000.0, y); });
        });
  const int64_t gh = H / p, gw = W / p, pd = cfg.patch_dim();
  const auto tok = randu(B * gh * gw * pd, g_seed++);
  plain(cs, "unpatchify",
        fmt("%s b=%lld grid=%lldx%lld p=%lld c=%lld", tag.c_str(), (long long)B, (long long)gh,
            (long long)gw, (long long)p, (long long)C),
        kExact, 8.0 * B * per, 0, [=](const Backend& be, Arena& a) {
          const float* y = a.in(tok);
          float* out = a.out(B * per);
          return std::function<void()>(
              [&be, y, out, B, gh, gw, p, C] { be.unpatchify(y, B, gh, gw, p, C, out); });
        });
  // Prompt side: embeddings and the masked mean.
  const int64_t V = cfg.text.vocab_size;
  std::vector<int64_t> ids(static_cast<size_t>(B * L));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7919) % V);
  const auto te = randu(V * Dt, g_seed++), pe = randu(L * Dt, g_seed++),
             E = randu(B * L * Dt, g_seed++);
  std::vector<uint8_t> km(static_cast<size_t>(B * L), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t l = 0; l <= (b ? L - 1 : L / 3); ++l) km[b * L + l] = 1;
  const std::string szt =
      fmt("%s b=%lld l=%lld d=%lld", tag.c_str(), (long long)B, (long long)L, (long long)Dt);
  plain(cs, "embed_tokens", szt, kExact, 8.0 * B * L * Dt, 0, [=](const Backend& be, Arena& a) {
    const auto* i = static_cast<const int64_t*>(a.bytes(ids.data(), ids.size() * 8));
    const float *t = a.in(te), *q = a.in(pe);
    float* x = a.out(B * L * Dt);
    return std::function<void()>(
        [&be, i, t, q, x, B, L, Dt] { be.embed_tokens(i, t, q, B, L, Dt, x); });
  });
  plain(cs, "masked_mean", szt, kExact, 4.0 * B * L * Dt, 0, [=](const Backend& be, Arena& a) {
    const float* e = a.in(E);
    const auto* m = static_cast<const uint8_t*>(a.bytes(km.data(), km.size()));
    float* y = a.out(B * Dt);
    return std::function<void()>([&be, e, m, y, B, L, Dt] { be.masked_mean(e, m, B, L, Dt, y); });
  });
}

void awkward_shapes(std::vector<Case>& cs) {
  linear(cs, "1 row", 1, 37, 29, Activation::kSilu);
  linear(cs, "odd", 77, 100, 65, Activation::kGeluTanh);
  linear(cs, "long", 1031, 96, 131, Activation::kNone);
  conv(cs, "odd", 1, 3, 7, 9, ConvDesc{5, 3, 3, 1, 1, false, Activation::kNone});
  conv(cs, "odd stride2", 3, 5, 9, 7, ConvDesc{6, 5, 3, 2, 1, false, Activation::kSilu});
  conv(cs, "odd patch", 1, 3, 10, 14, ConvDesc{13, 3, 2, 2, 0, true, Activation::kNone});
  attention(cs, "1 query", 1, 2, 1, 1, 8, false, false);
  attention(cs, "text 77", 2, 4, 77, 77, 16, true, true);
  attention(cs, "cross 77", 2, 3, 67, 77, 24, false, true);
  attention(cs, "long", 1, 2, 577, 577, 40, true, false);
  slab(cs, "1 token", 1, 2, 1, 1, 8, 3);
  slab(cs, "odd", 2, 3, 5, 7, 13, 5);
  slab(cs, "wide kernel", 1, 1, 3, 2, 4, 7);
  slab(cs, "long", 1, 2, 64, 64, 36, 5);
  cswin(cs, "1 token", 1, 2, 1, 1, 8, 1, 3);
  cswin(cs, "ragged", 2, 4, 5, 7, 13, 2, 3);
  cswin(cs, "odd heads", 1, 3, 6, 4, 5, 4, 5);
  cswin(cs, "stripe > grid", 1, 2, 3, 5, 8, 8, 3);
  cswin(cs, "long", 1, 2, 64, 64, 32, 8, 3);
}

}  // namespace

std::vector<Case> all_cases(const std::vector<std::string>& config_paths) {
  std::vector<Case> cs;
  g_seed = 1;
  for (const std::string& path : config_paths) {
    auto cfg = load_config(path);
    if (!cfg.is_ok()) {
      std::fprintf(stderr, "duet_backend_ops: %s\n", cfg.status().to_string().c_str());
      continue;
    }
    model_shapes(cs, cfg->name, *cfg);
  }
  awkward_shapes(cs);
  return cs;
}

}  // namespace duet::backend_ops
