// Analytic FLOP counter, mirroring python/duet_ref/{text_encoder,backbone,refiner,model}.py.
#include "bench/flops.h"

#include <algorithm>
#include <vector>

namespace duet::bench {

namespace {

// y [m, n] = x [m, k] · Wᵀ
double mm(double m, double n, double k) { return 2.0 * m * n * k; }

// conv: output pixels × cout × (cin · k · k)
double conv(double b, double ho, double wo, double cout, double cin, double k) {
  return mm(b * ho * wo, cout, cin * k * k);
}

// Refiner ResBlock at resolution h × w (python/duet_ref/refiner.py ResBlock).
double resblock(double b, double h, double w, double cin, double cout, double d, int mode,
                double ct) {
  double f = conv(b, h, w, cout, cin, 3);  // conv1
  if (mode == 0)
    f += mm(b, 2 * cout, d);  // film t_proj
  else if (mode == 2)
    f += mm(b, 3 * cout, d);  // gated t_proj
  else
    f += mm(b, ct, d) + conv(b, h, w, cout, cout + ct, 1);  // concat: t_proj + t_mix
  f += conv(b, h, w, cout, cout, 3);                        // conv2
  if (cin != cout) f += conv(b, h, w, cout, cin, 1);        // skip
  f += mm(b, cout, cout);                                   // att_c
  f += conv(b, h, w, cout, cout, 1);                        // att_s
  return f;
}

}  // namespace

FlopCount count_flops(const ModelConfig& cfg, int64_t batch, int64_t height, int64_t width) {
  FlopCount fc;
  const double B = static_cast<double>(batch);
  const double H = static_cast<double>(height > 0 ? height : cfg.image.height);
  const double W = static_cast<double>(width > 0 ? width : cfg.image.width);
  const double C = static_cast<double>(cfg.image.channels);
  const double L = static_cast<double>(cfg.text.max_length);
  const double Dt = static_cast<double>(cfg.text.width);
  const double rt = static_cast<double>(cfg.text.mlp_ratio);
  const double D = static_cast<double>(cfg.backbone.width);
  const double r = static_cast<double>(cfg.backbone.mlp_ratio);
  const double P = static_cast<double>(cfg.backbone.patch);
  const double depth = static_cast<double>(cfg.backbone.depth);
  const double N = (H / P) * (W / P);
  const double T = static_cast<double>(kTimeEmbedDim);

  // ---- prompt encoding ----
  const double BL = B * L;
  const double text_layer = mm(BL, 3 * Dt, Dt) + 2 * mm(B * L, L, Dt) /* QKᵀ, AV over heads */ +
                            mm(BL, Dt, Dt) + mm(BL, rt * Dt, Dt) + mm(BL, Dt, rt * Dt);
  fc.text_encoder = static_cast<double>(cfg.text.layers) * text_layer;
  fc.prompt_kv = depth * (2 * mm(BL, D, Dt) + mm(B, D, Dt));

  // ---- conditioning: t_mlp (T -> D -> D) + pool_proj (Dt -> D) ----
  fc.cond = mm(B, D, T) + mm(B, D, D) + mm(B, D, Dt);

  // ---- backbone ----
  const double BN = B * N;
  fc.backbone_gemm = depth * (mm(BN, 3 * D, D) + mm(BN, D, D)          // self qkv, proj
                              + mm(BN, D, D) + mm(BN, D, D)            // cross q, proj
                              + mm(BN, r * D, D) + mm(BN, D, r * D));  // mlp
  // Self-attention per block: softmax Q·Kᵀ and A·V (2·mm(BN, N, D)); SLAB φ(K)ᵀV and φ(Q)·kv
  // per head (2·mm(BN, d, D), d = D / heads), the normaliser (2·BN·D) and the k×k depth-wise conv
  // on V (2·BN·D·k²). Cross-attention: 2·mm(BN, L, D).
  const double d_head = D / static_cast<double>(cfg.backbone.heads);
  const double kk = static_cast<double>(cfg.backbone.slab_kernel * cfg.backbone.slab_kernel);
  // CSWin: Q·Kᵀ and A·V within each stripe window (4·d per query-key pair and head; the sum of
  // squared window sizes per branch, ragged last stripes included) + the LePE conv (2·BN·D·k²).
  const auto gh = static_cast<int64_t>(H / P), gw = static_cast<int64_t>(W / P);
  const int64_t sw = cfg.backbone.cswin_stripe;
  auto window_pairs = [sw](int64_t across, int64_t along) {
    double pairs = 0;
    for (int64_t s0 = 0; s0 < across; s0 += sw) {
      const double len = static_cast<double>(std::min(sw, across - s0) * along);
      pairs += len * len;
    }
    return pairs;
  };
  const int64_t hh = cfg.backbone.heads / 2, hv = cfg.backbone.heads - hh;
  const double kc = static_cast<double>(cfg.backbone.cswin_kernel * cfg.backbone.cswin_kernel);
  const double cswin =
      B * 4 * d_head * (hh * window_pairs(gh, gw) + hv * window_pairs(gw, gh)) + 2 * BN * D * kc;
  for (int64_t i = 0; i < cfg.backbone.depth; ++i)
    fc.backbone_attn += (cfg.backbone.slab(i)    ? 2 * mm(BN, d_head, D) + 2 * BN * D * (1 + kk)
                         : cfg.backbone.cswin(i) ? cswin
                                                 : 2 * mm(BN, N, D)) +
                        2 * mm(BN, L, D);
  fc.backbone_other = conv(B, H / P, W / P, D, C, P)             // patch embedding
                      + depth * mm(B, 6 * D, D)                  // adaLN
                      + mm(B, 2 * D, D) + mm(BN, P * P * C, D);  // final ada + linear

  // ---- refiner ----
  const auto& rc = cfg.refiner;
  std::vector<double> ch;
  for (int64_t m : rc.channel_mult) ch.push_back(static_cast<double>(rc.base_channels * m));
  const int levels = static_cast<int>(ch.size());
  const double ct = static_cast<double>(rc.time_channels);
  const double ku = static_cast<double>(rc.carafe.k_up), ke = static_cast<double>(rc.carafe.k_enc);
  const double s = static_cast<double>(rc.carafe.scale),
               cmp = static_cast<double>(rc.carafe.compress);
  auto hw = [&](int lvl, bool height_dim) {
    double v = height_dim ? H : W;
    for (int i = 0; i < lvl; ++i) v /= 2;
    return v;
  };
  double rf = conv(B, H, W, ch[0], 2 * C, 3);  // conv_in
  double cin = ch[0];
  for (int i = 0; i < levels; ++i) {
    rf += resblock(B, hw(i, true), hw(i, false), cin, ch[i], D, 0, ct);
    if (i < levels - 1) rf += conv(B, hw(i + 1, true), hw(i + 1, false), ch[i], ch[i], 3);  // down
    cin = ch[i];
  }
  rf += resblock(B, hw(levels - 1, true), hw(levels - 1, false), ch.back(), ch.back(), D, 1, ct);
  for (int i = levels - 2; i >= 0; --i) {
    const double lh = hw(i + 1, true), lw = hw(i + 1, false);     // CARAFE input resolution
    rf += conv(B, lh, lw, cmp, ch[i + 1], 1)                      // comp
          + conv(B, lh, lw, s * s * ku * ku, cmp, ke)             // enc
          + 2.0 * B * ch[i + 1] * (s * lh) * (s * lw) * ku * ku;  // reassembly
    rf += conv(B, hw(i, true), hw(i, false), ch[i], ch[i + 1] + ch[i], 1);  // fuse
    rf += resblock(B, hw(i, true), hw(i, false), ch[i], ch[i], D, 2, ct);   // dec
  }
  rf += conv(B, H, W, C, ch[0], 3);  // conv_out
  fc.refiner = rf;
  fc.gate = mm(B, static_cast<double>(cfg.gate.hidden), T) +
            mm(B, 1, static_cast<double>(cfg.gate.hidden));
  return fc;
}

double cache_flops_saved(const ModelConfig& cfg, const CacheSpec& spec,
                         const std::vector<int>& reused, const std::function<int64_t(int)>& rows_of,
                         int64_t height, int64_t width) {
  const int64_t depth = cfg.backbone.depth;
  const int64_t span = spec.mode == CacheMode::kStep    ? depth
                       : spec.mode == CacheMode::kBlock ? depth - spec.first - spec.last
                                                        : 0;
  double saved = 0;
  for (int c : reused) {
    const FlopCount f = count_flops(cfg, rows_of(c), height, width);
    saved += (f.backbone_gemm + f.backbone_attn) * static_cast<double>(span) / depth;
  }
  return saved;
}

}  // namespace duet::bench
