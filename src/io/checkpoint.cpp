// Expected tensor table of DuetModel (python/duet_ref/model.py) and checkpoint validation.
// PyTorch state_dict() order: a module's own parameters first, then its children in
// registration order (recursively) - mirrored here module by module.
#include "duet/checkpoint.h"

#include <unordered_map>

#include "io/io_util.h"

namespace duet {
namespace {

class TableBuilder {
 public:
  explicit TableBuilder(std::vector<ExpectedTensor>* out) : out_(out) {}
  void param(const std::string& name, Shape shape) { out_->push_back({name, std::move(shape)}); }
  // nn.Linear(in, out): weight [out, in], bias [out]
  void linear(const std::string& n, int64_t in, int64_t out) {
    param(n + ".weight", {out, in});
    param(n + ".bias", {out});
  }
  // nn.Conv2d(in, out, k): weight [out, in, k, k], bias [out]
  void conv(const std::string& n, int64_t in, int64_t out, int64_t k) {
    param(n + ".weight", {out, in, k, k});
    param(n + ".bias", {out});
  }
  // nn.LayerNorm(c) / nn.GroupNorm(g, c): weight [c], bias [c]
  void norm(const std::string& n, int64_t c) {
    param(n + ".weight", {c});
    param(n + ".bias", {c});
  }

 private:
  std::vector<ExpectedTensor>* out_;
};

// layers.py Attention (self) and Mlp.
void self_attention(TableBuilder& t, const std::string& n, int64_t dim) {
  t.linear(n + ".qkv", dim, 3 * dim);
  t.linear(n + ".proj", dim, dim);
}
void mlp(TableBuilder& t, const std::string& n, int64_t dim, int64_t ratio) {
  t.linear(n + ".fc1", dim, dim * ratio);
  t.linear(n + ".fc2", dim * ratio, dim);
}

enum class ResMode { kFilm, kConcat, kGated };

// refiner.py ResBlock(cin, cout, groups, cond_dim=D, mode, time_channels=Ct).
void res_block(TableBuilder& t, const std::string& n, int64_t cin, int64_t cout, int64_t d,
               ResMode mode, int64_t ct) {
  t.norm(n + ".norm1", cin);
  t.conv(n + ".conv1", cin, cout, 3);
  switch (mode) {
    case ResMode::kFilm:
      t.linear(n + ".t_proj", d, 2 * cout);
      break;  // (scale, shift)
    case ResMode::kGated:
      t.linear(n + ".t_proj", d, 3 * cout);
      break;  // (scale, shift, g)
    case ResMode::kConcat:
      t.linear(n + ".t_proj", d, ct);
      t.conv(n + ".t_mix", cout + ct, cout, 1);  // concat[h, m] -> cout
      break;
  }
  t.norm(n + ".norm2", cout);
  t.conv(n + ".conv2", cout, cout, 3);
  if (cin != cout) t.conv(n + ".skip", cin, cout, 1);  // only when channels change
  t.linear(n + ".att_c", cout, cout);
  t.conv(n + ".att_s", cout, cout, 1);
}

std::string shape_dtype(const Shape& s, DType t) { return shape_string(s) + " " + dtype_name(t); }

}  // namespace

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg) {
  std::vector<ExpectedTensor> out;
  TableBuilder t(&out);
  const int64_t C = cfg.image.channels, D = cfg.backbone.width, Dt = cfg.text.width;
  const int64_t p = cfg.backbone.patch;
  // text_encoder.py TextEncoder: pos_emb is a direct parameter, so it precedes tok_emb.
  t.param("text.pos_emb", {cfg.text.max_length, Dt});
  t.param("text.tok_emb.weight", {cfg.text.vocab_size, Dt});
  for (int64_t i = 0; i < cfg.text.layers; ++i) {
    const std::string b = "text.blocks." + std::to_string(i);
    t.norm(b + ".ln1", Dt);
    self_attention(t, b + ".attn", Dt);
    t.norm(b + ".ln2", Dt);
    mlp(t, b + ".mlp", Dt, cfg.text.mlp_ratio);
  }
  t.norm("text.ln_f", Dt);
  // model.py Conditioning: t_mlp = TimestepMlp(256, D, D), pool_proj = Linear(Dt, D).
  t.linear("cond.t_mlp.fc1", kTimeEmbedDim, D);
  t.linear("cond.t_mlp.fc2", D, D);
  t.linear("cond.pool_proj", Dt, D);
  // backbone.py Backbone.
  t.conv("backbone.patch", C, D, p);
  for (int64_t i = 0; i < cfg.backbone.depth; ++i) {
    const std::string b = "backbone.blocks." + std::to_string(i);
    t.linear(b + ".ada", D, 6 * D);  // (sh1, sc1, g1, sh2, sc2, g2)
    if (cfg.backbone.slab(i)) {      // slab_attention.py SlabAttention: qkv, dwc, proj
      t.linear(b + ".attn.qkv", D, 3 * D);
      t.conv(b + ".attn.dwc", 1, D / cfg.backbone.heads, cfg.backbone.slab_kernel);
      t.linear(b + ".attn.proj", D, D);
    } else if (cfg.backbone.cswin(i)) {  // cswin_attention.py CSWinAttention: qkv, lepe, proj
      t.linear(b + ".attn.qkv", D, 3 * D);
      t.conv(b + ".attn.lepe", 1, D, cfg.backbone.cswin_kernel);
      t.linear(b + ".attn.proj", D, D);
    } else {
      self_attention(t, b + ".attn", D);
    }
    if (!cfg.backbone.repbn(i)) t.norm(b + ".ln_c", D);  // repbn: folded into cross.q
    t.linear(b + ".cross.q", D, D);
    t.linear(b + ".cross.k", Dt, D);
    t.linear(b + ".cross.v", Dt, D);
    t.linear(b + ".cross.proj", D, D);
    t.linear(b + ".sem_gate", Dt, D);
    mlp(t, b + ".mlp", D, cfg.backbone.mlp_ratio);
  }
  t.linear("backbone.final.ada", D, 2 * D);
  t.linear("backbone.final.linear", D, cfg.patch_dim());
  // refiner.py Refiner.
  const auto& r = cfg.refiner;
  const std::vector<int64_t> ch = cfg.level_channels();
  const size_t levels = ch.size();
  const int64_t ct = r.time_channels;
  t.conv("refiner.conv_in", 2 * C, r.base_channels, 3);
  int64_t cin = r.base_channels;
  for (size_t i = 0; i < levels; ++i) {
    res_block(t, "refiner.enc." + std::to_string(i), cin, ch[i], D, ResMode::kFilm, ct);
    cin = ch[i];
  }
  for (size_t i = 0; i + 1 < levels; ++i)
    t.conv("refiner.down." + std::to_string(i), ch[i], ch[i], 3);  // stride 2
  res_block(t, "refiner.mid", ch.back(), ch.back(), D, ResMode::kConcat, ct);
  // Decoder level i (levels-2 down to 0) is stored at index j = levels-2-i.
  const auto& cf = r.carafe;
  for (size_t j = 0; j + 1 < levels; ++j) {
    const size_t i = levels - 2 - j;
    const std::string up = "refiner.up." + std::to_string(j);
    t.conv(up + ".comp", ch[i + 1], cf.compress, 1);
    t.conv(up + ".enc", cf.compress, cf.scale * cf.scale * cf.k_up * cf.k_up, cf.k_enc);
  }
  for (size_t j = 0; j + 1 < levels; ++j) {
    const size_t i = levels - 2 - j;
    t.conv("refiner.fuse." + std::to_string(j), ch[i + 1] + ch[i], ch[i], 1);
  }
  for (size_t j = 0; j + 1 < levels; ++j) {
    const size_t i = levels - 2 - j;
    res_block(t, "refiner.dec." + std::to_string(j), ch[i], ch[i], D, ResMode::kGated, ct);
  }
  t.norm("refiner.norm_out", ch[0]);
  t.conv("refiner.conv_out", ch[0], C, 3);
  // model.py Gate: TimestepMlp(256, hidden, 1).
  t.linear("gate.mlp.fc1", kTimeEmbedDim, cfg.gate.hidden);
  t.linear("gate.mlp.fc2", cfg.gate.hidden, 1);
  return out;
}

std::string_view branch_of(std::string_view name) {
  for (std::string_view b : {"text", "cond", "backbone", "refiner", "gate"}) {
    if (name.size() > b.size() && name.substr(0, b.size()) == b && name[b.size()] == '.') return b;
  }
  return "other";
}

void BranchCounts::add(std::string_view name, int64_t n) {
  const std::string_view b = branch_of(name);
  int64_t* dst = b == "text"       ? &text
                 : b == "cond"     ? &cond
                 : b == "backbone" ? &backbone
                 : b == "refiner"  ? &refiner
                 : b == "gate"     ? &gate
                                   : &other;
  *dst += n;
}

BranchCounts count_parameters(const std::vector<TensorEntry>& tensors) {
  BranchCounts c;
  for (const auto& e : tensors) c.add(e.name, e.numel);
  return c;
}

BranchCounts count_parameters(const std::vector<ExpectedTensor>& tensors) {
  BranchCounts c;
  for (const auto& e : tensors) {
    int64_t n = 0;
    if (checked_numel(e.shape, &n)) c.add(e.name, n);
  }
  return c;
}

bool is_weight_dtype(DType t) { return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16; }

CheckpointReport compare_checkpoint(const SafetensorsFile& file, const ModelConfig& cfg) {
  CheckpointReport rep;
  const std::vector<ExpectedTensor> want = expected_tensors(cfg);
  std::unordered_map<std::string_view, const ExpectedTensor*> by_name;
  for (const auto& e : want) by_name.emplace(e.name, &e);
  for (const TensorEntry& e : file.tensors()) {  // file (storage) order
    auto it = by_name.find(e.name);
    if (it == by_name.end()) {
      rep.extra.push_back("unexpected tensor " + quote_name(e.name) + " " +
                          shape_dtype(e.shape, e.dtype) + " (not a parameter of this config)");
      continue;
    }
    if (!is_weight_dtype(e.dtype))
      rep.mis_typed.push_back("tensor " + quote_name(e.name) + ": dtype " + dtype_name(e.dtype) +
                              "; weights must be F32, F16 or BF16");
    if (e.shape != it->second->shape)
      rep.mis_shaped.push_back("tensor " + quote_name(e.name) + ": shape " + shape_string(e.shape) +
                               " but the config needs " + shape_string(it->second->shape));
  }
  for (const auto& w : want) {  // state_dict order
    if (!file.find(w.name))
      rep.missing.push_back("missing tensor " + quote_name(w.name) + " (expected " +
                            shape_dtype(w.shape, DType::kF32) + ")");
  }
  return rep;
}

std::string CheckpointReport::summary(const std::string& file, size_t max_per_class) const {
  std::string out = file +
                    ": checkpoint does not match the config: " + std::to_string(missing.size()) +
                    " missing, " + std::to_string(extra.size()) + " unexpected, " +
                    std::to_string(mis_shaped.size()) + " wrong shape, " +
                    std::to_string(mis_typed.size()) + " wrong dtype";
  for (const auto* list : {&missing, &extra, &mis_shaped, &mis_typed}) {
    for (size_t i = 0; i < list->size() && i < max_per_class; ++i)
      out += "\n" + file + ": " + (*list)[i];
    if (list->size() > max_per_class)
      out += "\n" + file + ":   ... and " + std::to_string(list->size() - max_per_class) +
             " more like this";
  }
  return out;
}

Status check_checkpoint(const SafetensorsFile& file, const ModelConfig& cfg) {
  const CheckpointReport rep = compare_checkpoint(file, cfg);
  if (rep.ok()) return Status::ok();
  return invalid_argument(rep.summary(file.name()));
}

}  // namespace duet
