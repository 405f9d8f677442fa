// The detail refiner (refiner.py): a U-Net with FiLM / concat / gated timestep injection,
// dual (channel × spatial) attention and CARAFE upsampling. NCHW throughout.
#include <array>

#include "model/context_state.h"

namespace duet {

namespace {

constexpr float kGnEps = 1e-5f;

// out [B, cout, H, W] = ResBlock(x [B, cin, H, W], c)
void resblock(Context::State& s, const ResBlockW& w, const float* x, int64_t B, int64_t H,
              int64_t W, const float* c, const float* c_silu, float* out) {
  const Backend& be = *s.be;
  const int64_t G = s.m->cfg.refiner.groups, ct = s.m->cfg.refiner.time_channels;
  const int64_t hw = H * W, cin = w.cin, cout = w.cout;
  WorkspaceScope scope(s.ws);
  float* t1 = s.ws.alloc(B * cin * hw);  // [B, cin, H, W] SiLU(GN1(x))
  be.group_norm(x, B, cin, hw, G, w.norm1.gamma, w.norm1.beta, kGnEps, true, t1);
  float* h = s.ws.alloc(B * cout * hw);  // [B, cout, H, W]
  be.conv2d(*w.conv1, t1, B, H, W, h);
  switch (w.mode) {
    case ResMode::kFilm: {  // (scale, shift) = t_proj(SiLU(c))
      float* tp = s.ws.alloc(B * 2 * cout);
      be.linear(*w.t_proj, c_silu, B, tp);
      be.film(h, tp, tp + cout, 2 * cout, B, cout, hw);
      break;
    }
    case ResMode::kGated: {  // (scale, shift, g) = t_proj(SiLU(c))
      float* tp = s.ws.alloc(B * 3 * cout);
      be.linear(*w.t_proj, c_silu, B, tp);
      be.gated_film(h, tp, tp + cout, tp + 2 * cout, 3 * cout, B, cout, hw);
      break;
    }
    case ResMode::kConcat: {  // h = t_mix(concat[h, t_proj(c) broadcast])
      float* mv = s.ws.alloc(B * ct);
      be.linear(*w.t_proj, c, B, mv);
      float* cat = s.ws.alloc(B * (cout + ct) * hw);
      be.concat_broadcast(h, cout, mv, ct, B, hw, cat);
      be.conv2d(*w.t_mix, cat, B, H, W, h);
      break;
    }
  }
  float* t2 = s.ws.alloc(B * cout * hw);  // SiLU(GN2(h))
  be.group_norm(h, B, cout, hw, G, w.norm2.gamma, w.norm2.beta, kGnEps, true, t2);
  be.conv2d(*w.conv2, t2, B, H, W, out);
  if (w.skip) {
    be.conv2d(*w.skip, x, B, H, W, h);  // h is free again
    be.add(out, h, 1, B * cout * hw);
  } else {
    be.add(out, x, 1, B * cout * hw);
  }
  float* pooled = s.ws.alloc(B * cout);  // [B, cout]
  be.global_avg_pool(out, B, cout, hw, pooled);
  float* ac = s.ws.alloc(B * cout);  // sigmoid(att_c(mean))
  be.linear(*w.att_c, pooled, B, ac);
  be.conv2d(*w.att_s, out, B, H, W, t2);  // sigmoid(att_s(h)) [B, cout, H, W]
  be.dual_attention(out, ac, t2, B, cout, hw);
}

}  // namespace

void refiner_forward(Context::State& s, const float* x, const float* eps_s, int64_t B,
                     const float* c, const float* c_silu, float* r) {
  const Model::Impl& m = *s.m;
  const Backend& be = *s.be;
  const ModelConfig& cfg = m.cfg;
  const int64_t C = cfg.image.channels, G = cfg.refiner.groups;
  const std::vector<int64_t>& mult = cfg.refiner.channel_mult;
  const int64_t levels = static_cast<int64_t>(mult.size());
  std::array<int64_t, kMaxRefinerLevels> ch{}, hs{}, ws{};
  for (int64_t i = 0; i < levels; ++i) {
    ch[i] = cfg.refiner.base_channels * mult[i];
    hs[i] = s.H >> i;
    ws[i] = s.W >> i;
  }
  WorkspaceScope scope(s.ws);
  const int64_t hw0 = s.H * s.W;
  float* cat = s.ws.alloc(B * 2 * C * hw0);  // [B, 2C, H, W]
  be.concat_channels(x, C, eps_s, C, B, hw0, cat);
  float* h = s.ws.alloc(B * cfg.refiner.base_channels * hw0);
  be.conv2d(*m.conv_in, cat, B, s.H, s.W, h);
  s.emit("ref.conv_in", h, B, cfg.refiner.base_channels, s.H, s.W);

  std::array<float*, kMaxRefinerLevels> skips{};
  for (int64_t i = 0; i < levels; ++i) {
    float* out = s.ws.alloc(B * ch[i] * hs[i] * ws[i]);
    resblock(s, m.enc[i], h, B, hs[i], ws[i], c, c_silu, out);
    if (s.hook) s.hook_view("ref.enc." + std::to_string(i), out, {B, ch[i], hs[i], ws[i]});
    if (i < levels - 1) {
      skips[i] = out;
      h = s.ws.alloc(B * ch[i] * hs[i + 1] * ws[i + 1]);
      be.conv2d(*m.down[i], out, B, hs[i], ws[i], h);
      if (s.hook) s.hook_view("ref.down." + std::to_string(i), h, {B, ch[i], hs[i + 1], ws[i + 1]});
    } else {
      h = out;
    }
  }
  {
    float* out = s.ws.alloc(B * ch[levels - 1] * hs[levels - 1] * ws[levels - 1]);
    resblock(s, m.mid, h, B, hs[levels - 1], ws[levels - 1], c, c_silu, out);
    h = out;
    s.emit("ref.mid", h, B, ch[levels - 1], hs[levels - 1], ws[levels - 1]);
  }
  const auto& cf = cfg.refiner.carafe;
  for (int64_t j = 0; j + 1 < levels; ++j) {
    const int64_t i = levels - 2 - j;  // h is at level i + 1 with ch[i + 1] channels
    const int64_t hl = hs[i + 1], wl = ws[i + 1], hw = hs[i] * ws[i];
    float* comp = s.ws.alloc(B * cf.compress * hl * wl);
    be.conv2d(*m.up[j].comp, h, B, hl, wl, comp);
    float* enc = s.ws.alloc(B * cf.scale * cf.scale * cf.k_up * cf.k_up * hl * wl);
    be.conv2d(*m.up[j].enc, comp, B, hl, wl, enc);
    float* scratch = s.ws.alloc(be.carafe_scratch_floats(B, ch[i + 1], hl, wl, cf.k_up, cf.scale));
    float* cat2 = s.ws.alloc(B * (ch[i + 1] + ch[i]) * hw);  // [B, ch[i+1] + ch[i], H_i, W_i]
    float* up = s.ws.alloc(B * ch[i + 1] * hw);
    be.carafe(h, enc, B, ch[i + 1], hl, wl, cf.k_up, cf.scale, scratch, up);
    if (s.hook) s.hook_view("ref.up." + std::to_string(j), up, {B, ch[i + 1], hs[i], ws[i]});
    be.concat_channels(up, ch[i + 1], skips[i], ch[i], B, hw, cat2);
    float* f = s.ws.alloc(B * ch[i] * hw);
    be.conv2d(*m.fuse[j], cat2, B, hs[i], ws[i], f);
    float* out = s.ws.alloc(B * ch[i] * hw);
    resblock(s, m.dec[j], f, B, hs[i], ws[i], c, c_silu, out);
    if (s.hook) s.hook_view("ref.dec." + std::to_string(j), out, {B, ch[i], hs[i], ws[i]});
    h = out;
  }
  float* t = s.ws.alloc(B * ch[0] * hw0);
  be.group_norm(h, B, ch[0], hw0, G, m.norm_out.gamma, m.norm_out.beta, kGnEps, true, t);
  be.conv2d(*m.conv_out, t, B, s.H, s.W, r);
}

}  // namespace duet
