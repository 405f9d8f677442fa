// The semantic backbone (backbone.py): patch embedding + pos, DiT blocks with adaLN-Zero,
// self-attention, text cross-attention gated by sigmoid(sem_gate(p)), MLP; final layer, unpatchify.
#include <cstring>
#include <string>

#include "model/backbone_cache_state.h"
#include "model/context_state.h"

namespace duet {

void backbone_forward(Context::State& s, const float* x, int64_t B, const float* c_silu,
                      const PromptState& ps, float* eps_s, std::span<CacheMember> cache) {
  const Model::Impl& m = *s.m;
  const Backend& be = *s.be;
  const ModelConfig& cfg = m.cfg;
  const int64_t p = cfg.backbone.patch, C = cfg.image.channels, D = cfg.backbone.width;
  const int64_t gh = s.H / p, gw = s.W / p, N = gh * gw, BN = B * N, L = ps.length;
  const int64_t heads = cfg.backbone.heads, hidden = D * cfg.backbone.mlp_ratio;
  WorkspaceScope scope(s.ws);
  float* h = s.ws.alloc(BN * D);         // [B, N, D] residual stream
  float* xn = s.ws.alloc(BN * D);        // [B, N, D] normalised / modulated
  float* qkv = s.ws.alloc(BN * 3 * D);   // [B, N, 3D]
  float* q = s.ws.alloc(BN * D);         // [B, N, D] cross-attention queries
  float* att = s.ws.alloc(BN * D);       // [B, N, D] attention output (pre-projection)
  float* o = s.ws.alloc(BN * D);         // [B, N, D] branch output
  float* hid = s.ws.alloc(BN * hidden);  // [B, N, rD]
  float* ada = s.ws.alloc(B * 6 * D);    // [B, 6D] = sh1 sc1 g1 sh2 sc2 g2
  float* h0 = s.ws.alloc(BN * D);        // [B, N, D] cache members: h at the start of their span
  const BackboneConfig& bc = cfg.backbone;
  bool any_slab = false, any_cswin = false;
  for (int64_t i = 0; i < bc.depth; ++i) {
    any_slab = any_slab || bc.slab(i);
    any_cswin = any_cswin || bc.cswin(i);
  }
  // [B, heads, d*d + d] kv and z of slab_linear blocks, + the backend's own scratch
  float* slab_scratch =
      any_slab ? s.ws.alloc(be.slab_scratch_floats(B, heads, D / heads, bc.slab_kernel)) : nullptr;
  // gathered stripe windows of cswin blocks (ops/cswin_layout.h)
  float* cswin_scratch = any_cswin
                             ? s.ws.alloc(be.cswin_scratch_floats(B, heads, D / heads, gh, gw,
                                                                  bc.cswin_stripe, bc.cswin_kernel))
                             : nullptr;

  be.conv2d(*m.patch, x, B, s.H, s.W, h);  // [B, N, D]
  be.add(h, s.pos.f32(), B, N * D);        // + pos [N, D] per image

  ops::AttentionArgs sa;  // self-attention over the image tokens
  sa.q = qkv;
  sa.k = qkv + D;
  sa.v = qkv + 2 * D;
  sa.ldq = sa.ldk = sa.ldv = 3 * D;
  sa.out = att;
  sa.ldo = D;
  sa.batch = B;
  sa.heads = heads;
  sa.nq = sa.nk = N;
  sa.head_dim = D / heads;
  ops::SlabAttentionArgs la;  // SLAB linear self-attention (slab_linear blocks)
  la.q = sa.q;
  la.k = sa.k;
  la.v = sa.v;
  la.ldq = la.ldk = la.ldv = 3 * D;
  la.out = att;
  la.ldo = D;
  la.scratch = slab_scratch;
  la.batch = B;
  la.heads = heads;
  la.gh = gh;
  la.gw = gw;
  la.head_dim = D / heads;
  la.kernel = cfg.backbone.slab_kernel;
  ops::CswinAttentionArgs wa;  // CSWin stripe self-attention (cswin blocks)
  wa.q = sa.q;
  wa.k = sa.k;
  wa.v = sa.v;
  wa.ldq = wa.ldk = wa.ldv = 3 * D;
  wa.out = att;
  wa.ldo = D;
  wa.scratch = cswin_scratch;
  wa.batch = B;
  wa.heads = heads;
  wa.gh = gh;
  wa.gw = gw;
  wa.head_dim = D / heads;
  wa.stripe = bc.cswin_stripe;
  wa.kernel = bc.cswin_kernel;
  ops::AttentionArgs ca = sa;  // cross-attention to the prompt
  ca.q = q;
  ca.ldq = ca.ldk = ca.ldv = D;
  ca.nk = L;
  ca.key_mask = ps.key_mask.as<uint8_t>();

  // xn = modulate(norm(h), shift, scale): LayerNorm, or none in a folded RepBN block
  auto norm_modulate = [&](const DiTBlockW& blk, const float* shift, const float* scale) {
    if (blk.repbn)
      be.modulate(h, B, N, D, shift, scale, 6 * D, xn);
    else
      be.layer_norm_modulate(h, B, N, D, 1e-6f, shift, scale, 6 * D, xn);
  };
  auto run_block = [&](size_t i, bool xn_ready) {
    const DiTBlockW& blk = m.blocks[i];
    // x = x + g1 * attn(modulate(norm1(x), sh1, sc1))
    if (!xn_ready) {
      be.linear(*blk.ada, c_silu, B, ada);
      norm_modulate(blk, ada, ada + D);
    }
    be.linear(*blk.qkv, xn, BN, qkv);
    if (bc.slab(static_cast<int64_t>(i))) {
      la.dwc_w = blk.dwc_w;
      la.dwc_b = blk.dwc_b;
      be.slab_attention(la);
    } else if (bc.cswin(static_cast<int64_t>(i))) {
      wa.lepe_w = blk.dwc_w;
      wa.lepe_b = blk.dwc_b;
      be.cswin_attention(wa);
    } else {
      be.attention(sa);
    }
    be.linear(*blk.proj, att, BN, o);
    be.add_gated_rows(h, o, ada + 2 * D, 6 * D, B, N, D);
    // x = x + sem * cross(ln_c(x), K, V); folded RepBN: ln_c's affine map lives in cross.q
    if (blk.repbn) {
      be.linear(*blk.q, h, BN, q);
    } else {
      be.layer_norm(h, BN, D, blk.ln_c.gamma, blk.ln_c.beta, 1e-6f, xn);
      be.linear(*blk.q, xn, BN, q);
    }
    ca.k = ps.k[i].f32();
    ca.v = ps.v[i].f32();
    be.attention(ca);
    be.linear(*blk.cproj, att, BN, o);
    be.add_gated_rows(h, o, ps.sem[i].f32(), D, B, N, D);
    // x = x + g2 * mlp(modulate(norm2(x), sh2, sc2))
    norm_modulate(blk, ada + 3 * D, ada + 4 * D);
    be.linear(*blk.fc1, xn, BN, hid);
    be.linear(*blk.fc2, hid, BN, o);
    be.add_gated_rows(h, o, ada + 5 * D, 6 * D, B, N, D);
    if (s.hook) s.hook_view("block." + std::to_string(i), h, {B, N, D});
  };

  const int64_t depth = static_cast<int64_t>(m.blocks.size());
  if (cache.empty()) {
    for (int64_t i = 0; i < depth; ++i) run_block(static_cast<size_t>(i), false);
  } else {
    // Cached spans (duet/backbone_cache.h). Per member: at block a snapshot h into h0 and decide;
    // at block e either res = h − h0 (computed) or h = h0 + res (reused). A block runs unless
    // every row of the call is inside a reusing member's span.
    const int64_t ND = N * D;
    auto at = [&](float* base, const CacheMember& mb) { return base + mb.row0 * ND; };
    auto finish = [&](CacheMember& mb) {
      BackboneCache::State& c = mb.cache->state();
      const size_t bytes = sizeof(float) * static_cast<size_t>(mb.rows * ND);
      if (c.computing) {
        be.copy(c.res.f32(), at(h, mb), bytes);
        be.add_gated_rows(c.res.f32(), at(h0, mb), c.minus_one.f32(), 0, mb.rows, N, D);
      } else {
        be.copy(at(h, mb), at(h0, mb), bytes);
        be.add(at(h, mb), c.res.f32(), 1, mb.rows * ND);
      }
    };
    for (int64_t i = 0; i <= depth; ++i) {
      bool xn_ready = false;
      int64_t reusing = 0;  // rows of the call inside a reusing member's span at block i
      for (CacheMember& mb : cache) {
        BackboneCache::State& c = mb.cache->state();
        const size_t count = static_cast<size_t>(mb.rows * ND);
        if (i == 0 && c.spec.mode == CacheMode::kBlock)  // h_in for the indicator h_F − h_in
          std::memcpy(c.h_in.data(), c.host_rows(at(h, mb), count), sizeof(float) * count);
        if (i == c.e) finish(mb);
        if (i == c.a) {
          be.copy(at(h0, mb), at(h, mb), sizeof(float) * count);
          const float* ind = nullptr;
          if (c.spec.mode == CacheMode::kStep) {  // block 0's modulated input
            if (!xn_ready) {
              be.linear(*m.blocks[0].ada, c_silu, B, ada);
              norm_modulate(m.blocks[0], ada, ada + D);
              xn_ready = true;
            }
            ind = c.host_rows(at(xn, mb), count);
          } else {  // the first F blocks' residual h_F − h_in
            const float* hf = c.host_rows(at(h, mb), count);
            for (size_t k = 0; k < count; ++k) c.ind[k] = hf[k] - c.h_in[k];
            ind = c.ind.data();
          }
          c.computing = c.decide(ind, mb.rows, mb.eligible);
          mb.computed = c.computing;
        }
        if (i >= c.a && i < c.e && !c.computing) reusing += mb.rows;
      }
      if (i < depth && reusing < B) run_block(static_cast<size_t>(i), xn_ready);
    }
  }
  // final layer: linear(modulate(ln(x), shift, scale)) -> [B, N, p*p*C] -> unpatchify
  float* y = s.ws.alloc(BN * cfg.patch_dim());  // [B, N, p*p*C]
  be.linear(*m.final_ada, c_silu, B, ada);      // [B, 2D] = shift, scale
  be.layer_norm_modulate(h, B, N, D, 1e-6f, ada, ada + D, 2 * D, xn);
  be.linear(*m.final_linear, xn, BN, y);
  s.emit("final_tokens", y, B, N, cfg.patch_dim());
  be.unpatchify(y, B, gh, gw, p, C, eps_s);
}

}  // namespace duet
