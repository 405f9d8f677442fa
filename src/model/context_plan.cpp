// Context planning without allocation: the option checks shared with
// Context::create, the workspace peak computed by replaying the forward passes'
// allocation sequence on sizes alone (must mirror context.cpp,
// backbone_forward.cpp and refiner_forward.cpp; the test
// ContextMemory.EstimateMatchesTheMeasuredWorkspace checks it equals the
// measured peak), and Context::estimate_bytes.
#include <algorithm>
#include <array>
#include <cstdio>

#include "model/context_state.h"

namespace duet {

namespace {

// The Workspace's stack discipline on sizes only.
struct StackPlan {
  size_t offset = 0, peak = 0;
  void alloc(int64_t n) {
    offset += Workspace::alloc_bytes(n);
    peak = std::max(peak, offset);
  }
};

void plan_resblock(StackPlan &st, const ResBlockW &w, const ModelConfig &cfg, int64_t B,
                   int64_t hw) {
  const size_t mark = st.offset;
  const int64_t ct = cfg.refiner.time_channels, cin = w.cin, cout = w.cout;
  st.alloc(B * cin * hw);
  st.alloc(B * cout * hw);
  switch (w.mode) {
    case ResMode::kFilm:
      st.alloc(B * 2 * cout);
      break;
    case ResMode::kGated:
      st.alloc(B * 3 * cout);
      break;
    case ResMode::kConcat:
      st.alloc(B * ct);
      st.alloc(B * (cout + ct) * hw);
      break;
  }
  st.alloc(B * cout * hw);
  st.alloc(B * cout);
  st.alloc(B * cout);
  st.offset = mark;
}

void plan_refiner(StackPlan &st, const Model::Impl &m, int64_t B, int64_t H, int64_t W) {
  const ModelConfig &cfg = m.cfg;
  const int64_t C = cfg.image.channels;
  const int64_t levels = static_cast<int64_t>(cfg.refiner.channel_mult.size());
  std::array<int64_t, kMaxRefinerLevels> ch{}, hs{}, ws{};
  for (int64_t i = 0; i < levels; ++i) {
    ch[i] = cfg.refiner.base_channels * cfg.refiner.channel_mult[i];
    hs[i] = H >> i;
    ws[i] = W >> i;
  }
  const size_t mark = st.offset;
  const int64_t hw0 = H * W;
  st.alloc(B * 2 * C * hw0);
  st.alloc(B * cfg.refiner.base_channels * hw0);
  for (int64_t i = 0; i < levels; ++i) {
    st.alloc(B * ch[i] * hs[i] * ws[i]);
    plan_resblock(st, m.enc[i], cfg, B, hs[i] * ws[i]);
    if (i < levels - 1) st.alloc(B * ch[i] * hs[i + 1] * ws[i + 1]);
  }
  st.alloc(B * ch[levels - 1] * hs[levels - 1] * ws[levels - 1]);
  plan_resblock(st, m.mid, cfg, B, hs[levels - 1] * ws[levels - 1]);
  const auto &cf = cfg.refiner.carafe;
  for (int64_t j = 0; j + 1 < levels; ++j) {
    const int64_t i = levels - 2 - j;
    const int64_t hl = hs[i + 1], wl = ws[i + 1], hw = hs[i] * ws[i];
    st.alloc(B * cf.compress * hl * wl);
    st.alloc(B * cf.scale * cf.scale * cf.k_up * cf.k_up * hl * wl);
    st.alloc(m.be->carafe_scratch_floats(B, ch[i + 1], hl, wl, cf.k_up, cf.scale));
    st.alloc(B * (ch[i + 1] + ch[i]) * hw);
    st.alloc(B * ch[i + 1] * hw);
    st.alloc(B * ch[i] * hw);
    st.alloc(B * ch[i] * hw);
    plan_resblock(st, m.dec[j], cfg, B, hw);
  }
  st.alloc(B * ch[0] * hw0);
  st.offset = mark;
}

// True when any backbone block uses SLAB linear attention (its kv/z scratch is then planned).
bool any_slab(const ModelConfig &cfg) {
  for (int64_t i = 0; i < cfg.backbone.depth; ++i)
    if (cfg.backbone.slab(i)) return true;
  return false;
}

// True when any backbone block uses CSWin stripe attention (its window scratch is then planned).
bool any_cswin(const ModelConfig &cfg) {
  for (int64_t i = 0; i < cfg.backbone.depth; ++i)
    if (cfg.backbone.cswin(i)) return true;
  return false;
}

void plan_backbone(StackPlan &st, const Model::Impl &m, int64_t B, int64_t H, int64_t W) {
  const ModelConfig &cfg = m.cfg;
  const int64_t p = cfg.backbone.patch, D = cfg.backbone.width;
  const int64_t BN = B * (H / p) * (W / p), hidden = D * cfg.backbone.mlp_ratio;
  const size_t mark = st.offset;
  for (int k = 0; k < 2; ++k) st.alloc(BN * D);
  st.alloc(BN * 3 * D);
  for (int k = 0; k < 3; ++k) st.alloc(BN * D);
  st.alloc(BN * hidden);
  st.alloc(B * 6 * D);
  st.alloc(BN * D);  // h0: the cache members' span start (backbone_forward.cpp)
  if (any_slab(cfg))
    st.alloc(m.be->slab_scratch_floats(B, cfg.backbone.heads, D / cfg.backbone.heads,
                                       cfg.backbone.slab_kernel));
  if (any_cswin(cfg))
    st.alloc(m.be->cswin_scratch_floats(B, cfg.backbone.heads, D / cfg.backbone.heads, H / p, W / p,
                                        cfg.backbone.cswin_stripe, cfg.backbone.cswin_kernel));
  st.alloc(BN * cfg.patch_dim());
  st.offset = mark;
}

}  // namespace

Status check_context_options(const ModelConfig &cfg, int64_t B, int64_t H, int64_t W) {
  if (B < 1 || B > 4096)
    return invalid_argument("Context::create: max_batch must be in [1, 4096], got " +
                            std::to_string(B));
  const int64_t mult = std::max(cfg.backbone.patch, cfg.refiner_stride());
  if (H < 1 || W < 1 || H % cfg.backbone.patch || W % cfg.backbone.patch ||
      H % cfg.refiner_stride() || W % cfg.refiner_stride() || H > 8192 || W > 8192)
    return invalid_argument("Context::create: image size " + std::to_string(H) + "x" +
                            std::to_string(W) + " must be positive multiples of backbone.patch (" +
                            std::to_string(cfg.backbone.patch) + ") and the refiner stride (" +
                            std::to_string(cfg.refiner_stride()) + "), e.g. " +
                            std::to_string(mult));
  if (cfg.refiner_levels() > kMaxRefinerLevels)
    return unimplemented("Context::create: more than " + std::to_string(kMaxRefinerLevels) +
                         " refiner levels");
  return Status::ok();
}

int64_t plan_workspace_bytes(const Model::Impl &m, int64_t B, int64_t H, int64_t W) {
  const ModelConfig &cfg = m.cfg;
  const int64_t D = cfg.backbone.width;
  StackPlan st;  // Context::denoise with refine = true (the warm-up evaluation)
  st.alloc(B * kTimeEmbedDim);
  st.alloc(B * std::max(D, cfg.gate.hidden));
  st.alloc(B * D);
  st.alloc(B * D);
  const size_t top = st.offset;
  plan_backbone(st, m, B, H, W);
  plan_refiner(st, m, B, H, W);
  st.offset = top;
  st.alloc(B * cfg.image.channels * H * W);
  return static_cast<int64_t>(st.peak);
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f GiB", b / (1024.0 * 1024 * 1024));
  else if (b >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.1f MiB", b / (1024.0 * 1024));
  else if (b >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f KiB", b / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%lld bytes", static_cast<long long>(bytes));
  return buf;
}

Result<int64_t> Context::estimate_bytes(const Model &model, const ContextOptions &opts) {
  const ModelConfig &cfg = model.config();
  const int64_t B = opts.max_batch, H = opts.height ? opts.height : cfg.image.height,
                W = opts.width ? opts.width : cfg.image.width;
  DUET_RETURN_IF_ERROR(check_context_options(cfg, B, H, W));
  const int64_t C = cfg.image.channels, D = cfg.backbone.width, HW = H * W;
  const int64_t N = HW / (cfg.backbone.patch * cfg.backbone.patch);
  const int64_t L = cfg.text.max_length, Dt = cfg.text.width, M = B * L;
  const int64_t depth = cfg.backbone.depth;
  int64_t floats = B * D + 4 * B * C * HW + B;  // outputs: c, eps_s, r, eps_d, eps, alpha
  floats += N * D + HW + 4 * HW;                // pos embedding, high-pass mask, FFT plan
  floats += B * C * HW + B;                     // the warm-up x_t and t
  // The warm-up prompt state (E, p, per-block K, V, sem) and, while it is
  // encoded, the text encoder's temporaries (freed before the workspace is
  // measured).
  floats += M * Dt + B * Dt + depth * (2 * M * D + B * D);
  int64_t bytes = floats * static_cast<int64_t>(sizeof(float)) + M * (2 * 8 + 1);
  const int64_t encode_tmp =
      M * Dt * (6 + cfg.text.mlp_ratio) * static_cast<int64_t>(sizeof(float));
  bytes += std::max(encode_tmp, plan_workspace_bytes(model.impl(), B, H, W));
  return bytes;
}

}  // namespace duet
