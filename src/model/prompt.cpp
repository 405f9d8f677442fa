// The prompt side of the model (text_encoder.py + backbone.prompt_kv + the sem gates):
// tokenize → embed → pre-LN transformer → ln_f → masked mean → per-block K/V and sem gates.
// Runs once per prompt; allocates its own temporaries in backend memory (the hot loop is
// Context::denoise). The resulting PromptState stays in backend memory.
#include <cstring>
#include <vector>

#include "duet/tokenizer.h"

#include "model/model_impl.h"

namespace duet {

Status Model::tokenize(const std::vector<std::string>& texts, Tensor* ids, Tensor* mask) const {
  if (texts.empty()) return invalid_argument("no prompt texts given");
  const int64_t L = impl_->cfg.text.max_length, B = static_cast<int64_t>(texts.size());
  *ids = Tensor::zeros({B, L}, DType::kI64);
  *mask = Tensor::zeros({B, L}, DType::kI64);
  DUET_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok, make_tokenizer(impl_->cfg));
  for (int64_t b = 0; b < B; ++b) {
    const TokenizedText tt = tok->encode(texts[b]);
    for (int64_t l = 0; l < L; ++l) {
      ids->as<int64_t>()[b * L + l] = tt.ids[l];
      mask->as<int64_t>()[b * L + l] = tt.mask[l];
    }
  }
  return Status::ok();
}

Result<PromptState> Model::encode_prompt(const std::vector<std::string>& texts) const {
  Tensor ids, mask;
  DUET_RETURN_IF_ERROR(tokenize(texts, &ids, &mask));
  return encode_ids(ids, mask);
}

Result<PromptState> Model::encode_ids(const Tensor& ids, const Tensor& mask,
                                      const IntermediateHook& hook) const {
  const Impl& m = *impl_;
  const Backend& be = *m.be;
  const auto& tc = m.cfg.text;
  if (ids.dtype() != DType::kI64 || mask.dtype() != DType::kI64 || ids.rank() != 2 ||
      ids.shape() != mask.shape())
    return invalid_argument("encode_ids: ids and mask must be I64 [B, L] of equal shape, got " +
                            shape_string(ids.shape()) + " and " + shape_string(mask.shape()));
  const int64_t B = ids.dim(0), L = ids.dim(1), Dt = tc.width, H = tc.heads;
  const int64_t D = m.cfg.backbone.width;
  if (B < 1 || L < 1 || L > tc.max_length)
    return invalid_argument("encode_ids: need B >= 1 and 1 <= L <= text.max_length (" +
                            std::to_string(tc.max_length) + "), got " + shape_string(ids.shape()));
  PromptState ps;
  ps.batch = B;
  ps.length = L;
  ps.ids = ids.clone();
  ps.mask = mask.clone();
  std::vector<uint8_t> key_mask(static_cast<size_t>(B * L));  // host: checked, then uploaded
  for (int64_t i = 0; i < B * L; ++i) {
    const int64_t id = ids.as<int64_t>()[i];
    if (id < 0 || id >= tc.vocab_size)
      return invalid_argument("encode_ids: token id " + std::to_string(id) + " out of range [0, " +
                              std::to_string(tc.vocab_size) + ")");
    key_mask[i] = mask.as<int64_t>()[i] != 0;
  }
  for (int64_t b = 0; b < B; ++b) {
    bool any = false;
    for (int64_t l = 0; l < L; ++l) any |= key_mask[b * L + l] != 0;
    if (!any)
      return invalid_argument("encode_ids: prompt " + std::to_string(b) + " has an all-zero mask");
  }
  DUET_ASSIGN_OR_RETURN(ps.key_mask,
                        upload_tensor(be, Tensor::view(key_mask.data(), {B, L}, DType::kU8)));
  DUET_ASSIGN_OR_RETURN(Tensor ids_dev, upload_tensor(be, ids));

  // Temporaries in backend memory. x [B, L, Dt] = tok_emb[ids] + pos_emb[:L]
  const int64_t M = B * L;
  DUET_ASSIGN_OR_RETURN(Tensor x, backend_tensor(be, {B, L, Dt}));
  DUET_ASSIGN_OR_RETURN(Tensor xn, backend_tensor(be, {B, L, Dt}));
  DUET_ASSIGN_OR_RETURN(Tensor qkv, backend_tensor(be, {B, L, 3 * Dt}));
  DUET_ASSIGN_OR_RETURN(Tensor att, backend_tensor(be, {B, L, Dt}));
  DUET_ASSIGN_OR_RETURN(Tensor o, backend_tensor(be, {B, L, Dt}));
  DUET_ASSIGN_OR_RETURN(Tensor hid, backend_tensor(be, {B, L, Dt * tc.mlp_ratio}));
  be.embed_tokens(ids_dev.as<int64_t>(), m.tok_emb, m.pos_emb, B, L, Dt, x.f32());
  for (size_t bi = 0; bi < m.text_blocks.size(); ++bi) {
    const TextBlockW& blk = m.text_blocks[bi];
    be.layer_norm(x.f32(), M, Dt, blk.ln1.gamma, blk.ln1.beta, 1e-5f, xn.f32());
    be.linear(*blk.qkv, xn.f32(), M, qkv.f32());  // [B, L, 3Dt]
    ops::AttentionArgs a;
    a.q = qkv.f32();
    a.k = qkv.f32() + Dt;
    a.v = qkv.f32() + 2 * Dt;
    a.ldq = a.ldk = a.ldv = 3 * Dt;
    a.key_mask = ps.key_mask.as<uint8_t>();
    a.out = att.f32();
    a.ldo = Dt;
    a.batch = B;
    a.heads = H;
    a.nq = a.nk = L;
    a.head_dim = Dt / H;
    be.attention(a);
    be.linear(*blk.proj, att.f32(), M, o.f32());
    be.add(x.f32(), o.f32(), 1, M * Dt);
    be.layer_norm(x.f32(), M, Dt, blk.ln2.gamma, blk.ln2.beta, 1e-5f, xn.f32());
    be.linear(*blk.fc1, xn.f32(), M, hid.f32());
    be.linear(*blk.fc2, hid.f32(), M, o.f32());
    be.add(x.f32(), o.f32(), 1, M * Dt);
    if (hook) {
      const Tensor host = be.host_visible() ? x : download_tensor(be, x);
      hook("text_block." + std::to_string(bi), Tensor::view(host.raw(), {B, L, Dt}));
    }
  }
  DUET_ASSIGN_OR_RETURN(ps.E, backend_tensor(be, {B, L, Dt}));
  be.layer_norm(x.f32(), M, Dt, m.ln_f.gamma, m.ln_f.beta, 1e-5f, ps.E.f32());
  DUET_ASSIGN_OR_RETURN(ps.p, backend_tensor(be, {B, Dt}));  // p = sum_l E * m / sum_l m
  be.masked_mean(ps.E.f32(), ps.key_mask.as<uint8_t>(), B, L, Dt, ps.p.f32());
  for (const DiTBlockW& blk : m.blocks) {
    DUET_ASSIGN_OR_RETURN(Tensor k, backend_tensor(be, {B, L, D}));
    DUET_ASSIGN_OR_RETURN(Tensor v, backend_tensor(be, {B, L, D}));
    DUET_ASSIGN_OR_RETURN(Tensor sg, backend_tensor(be, {B, D}));
    be.linear(*blk.k, ps.E.f32(), M, k.f32());
    be.linear(*blk.v, ps.E.f32(), M, v.f32());
    be.linear(*blk.sem_gate, ps.p.f32(), B, sg.f32());
    ps.k.push_back(std::move(k));
    ps.v.push_back(std::move(v));
    ps.sem.push_back(std::move(sg));
  }
  return ps;
}

Result<PromptState> Model::concat_prompts(const std::vector<const PromptState*>& parts) const {
  if (parts.empty()) return invalid_argument("concat: no prompt states");
  const Backend& be = *impl_->be;
  const PromptState& f = *parts[0];
  PromptState out;
  out.length = f.length;
  for (const PromptState* p : parts) {
    if (!p) return invalid_argument("concat: null prompt state");
    if (p->length != f.length || p->k.size() != f.k.size() || p->v.size() != f.v.size() ||
        p->sem.size() != f.sem.size() || p->E.empty() || p->key_mask.empty())
      return invalid_argument("concat: prompt states of different shapes");
    out.batch += p->batch;
  }
  // Every tensor along dim 0; `on_backend`: a backend tensor (copied there), else host.
  auto cat = [&](auto get, bool on_backend) -> Result<Tensor> {
    const Tensor& t0 = get(f);
    Shape sh = t0.shape();
    sh[0] = out.batch;
    Tensor t;
    if (on_backend) {
      DUET_ASSIGN_OR_RETURN(t, backend_tensor(be, sh, t0.dtype()));
    } else {
      t = Tensor::zeros(sh, t0.dtype());
    }
    char* dst = static_cast<char*>(t.raw());
    for (const PromptState* p : parts) {
      const Tensor& src = get(*p);
      if (on_backend) {
        be.copy(dst, src.raw(), src.nbytes());
      } else {
        std::memcpy(dst, src.raw(), src.nbytes());
      }
      dst += src.nbytes();
    }
    return t;
  };
  DUET_ASSIGN_OR_RETURN(out.ids,
                        cat([](const PromptState& p) -> const Tensor& { return p.ids; }, false));
  DUET_ASSIGN_OR_RETURN(out.mask,
                        cat([](const PromptState& p) -> const Tensor& { return p.mask; }, false));
  DUET_ASSIGN_OR_RETURN(out.E,
                        cat([](const PromptState& p) -> const Tensor& { return p.E; }, true));
  DUET_ASSIGN_OR_RETURN(out.p,
                        cat([](const PromptState& p) -> const Tensor& { return p.p; }, true));
  DUET_ASSIGN_OR_RETURN(
      out.key_mask, cat([](const PromptState& p) -> const Tensor& { return p.key_mask; }, true));
  for (size_t i = 0; i < f.k.size(); ++i) {
    DUET_ASSIGN_OR_RETURN(Tensor k,
                          cat([i](const PromptState& p) -> const Tensor& { return p.k[i]; }, true));
    DUET_ASSIGN_OR_RETURN(Tensor v,
                          cat([i](const PromptState& p) -> const Tensor& { return p.v[i]; }, true));
    out.k.push_back(std::move(k));
    out.v.push_back(std::move(v));
  }
  for (size_t i = 0; i < f.sem.size(); ++i) {
    DUET_ASSIGN_OR_RETURN(
        Tensor sg, cat([i](const PromptState& p) -> const Tensor& { return p.sem[i]; }, true));
    out.sem.push_back(std::move(sg));
  }
  return out;
}

}  // namespace duet
