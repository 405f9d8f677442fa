// The prompt side of the model (text_encoder.py + backbone.prompt_kv + the sem gates):
// tokenize → embed → pre-LN transformer → ln_f → masked mean → per-block K/V and sem gates.
// Runs once per prompt; allocates its own temporaries (the hot loop is Context::denoise).
#include <vector>

#include "duet/tokenizer.h"

#include "model/glue.h"
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
  ps.key_mask.resize(static_cast<size_t>(B * L));
  for (int64_t i = 0; i < B * L; ++i) {
    const int64_t id = ids.as<int64_t>()[i];
    if (id < 0 || id >= tc.vocab_size)
      return invalid_argument("encode_ids: token id " + std::to_string(id) + " out of range [0, " +
                              std::to_string(tc.vocab_size) + ")");
    ps.key_mask[i] = mask.as<int64_t>()[i] != 0;
  }
  for (int64_t b = 0; b < B; ++b) {
    bool any = false;
    for (int64_t l = 0; l < L; ++l) any |= ps.key_mask[b * L + l] != 0;
    if (!any)
      return invalid_argument("encode_ids: prompt " + std::to_string(b) + " has an all-zero mask");
  }

  // x [B, L, Dt] = tok_emb[ids] + pos_emb[:L]
  const int64_t M = B * L;
  std::vector<float> x(M * Dt), xn(M * Dt), qkv(M * 3 * Dt), att(M * Dt), o(M * Dt),
      hid(M * Dt * tc.mlp_ratio);
  for (int64_t r = 0; r < M; ++r) {
    const float* te = m.tok_emb + ids.as<int64_t>()[r] * Dt;
    const float* pe = m.pos_emb + (r % L) * Dt;
    for (int64_t j = 0; j < Dt; ++j) x[r * Dt + j] = te[j] + pe[j];
  }
  for (size_t bi = 0; bi < m.text_blocks.size(); ++bi) {
    const TextBlockW& blk = m.text_blocks[bi];
    be.layer_norm(x.data(), M, Dt, blk.ln1.gamma, blk.ln1.beta, 1e-5f, xn.data());
    be.linear(*blk.qkv, xn.data(), M, qkv.data());  // [B, L, 3Dt]
    ops::AttentionArgs a;
    a.q = qkv.data();
    a.k = qkv.data() + Dt;
    a.v = qkv.data() + 2 * Dt;
    a.ldq = a.ldk = a.ldv = 3 * Dt;
    a.key_mask = ps.key_mask.data();
    a.out = att.data();
    a.ldo = Dt;
    a.batch = B;
    a.heads = H;
    a.nq = a.nk = L;
    a.head_dim = Dt / H;
    be.attention(a);
    be.linear(*blk.proj, att.data(), M, o.data());
    glue::add(x.data(), o.data(), M * Dt);
    be.layer_norm(x.data(), M, Dt, blk.ln2.gamma, blk.ln2.beta, 1e-5f, xn.data());
    be.linear(*blk.fc1, xn.data(), M, hid.data());
    be.linear(*blk.fc2, hid.data(), M, o.data());
    glue::add(x.data(), o.data(), M * Dt);
    if (hook) hook("text_block." + std::to_string(bi), Tensor::view(x.data(), {B, L, Dt}));
  }
  ps.E = Tensor::zeros({B, L, Dt});
  be.layer_norm(x.data(), M, Dt, m.ln_f.gamma, m.ln_f.beta, 1e-5f, ps.E.f32());
  // p = sum_l E * m / sum_l m
  ps.p = Tensor::zeros({B, Dt});
  for (int64_t b = 0; b < B; ++b) {
    double cnt = 0;
    std::vector<double> acc(Dt, 0.0);
    for (int64_t l = 0; l < L; ++l) {
      if (!ps.key_mask[b * L + l]) continue;
      cnt += 1;
      for (int64_t j = 0; j < Dt; ++j) acc[j] += ps.E.f32()[(b * L + l) * Dt + j];
    }
    for (int64_t j = 0; j < Dt; ++j) ps.p.f32()[b * Dt + j] = static_cast<float>(acc[j] / cnt);
  }
  for (const DiTBlockW& blk : m.blocks) {
    Tensor k = Tensor::zeros({B, L, D}), v = Tensor::zeros({B, L, D}), s = Tensor::zeros({B, D});
    be.linear(*blk.k, ps.E.f32(), M, k.f32());
    be.linear(*blk.v, ps.E.f32(), M, v.f32());
    be.linear(*blk.sem_gate, ps.p.f32(), B, s.f32());
    ps.k.push_back(std::move(k));
    ps.v.push_back(std::move(v));
    ps.sem.push_back(std::move(s));
  }
  return ps;
}

}  // namespace duet
