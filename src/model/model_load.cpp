// Model::load / Model::from_tensors: validate the tensor table against the config, convert
// weights to fp32 explicitly, and prepare every layer on the chosen backend.
#include <algorithm>
#include <optional>
#include <set>

#include "backends/gpu_devices.h"
#include "duet/checkpoint.h"
#include "duet/cpu_features.h"
#include "duet/quantize.h"
#include "duet/safetensors.h"
#include "model/model_impl.h"
#include "ops/lowp.h"

namespace duet {

Model::Model() : impl_(std::make_unique<Impl>()) {}
Model::~Model() = default;
const ModelConfig& Model::config() const { return impl_->cfg; }
const ModelInfo& Model::info() const { return impl_->info; }
BackendKind Model::backend_kind() const { return impl_->kind; }

namespace {

class Builder {
 public:
  // release: the file the tensors are views of (Model::load), whose pages are released layer by
  // layer once packed, so a load's peak memory is about one copy of the weights instead of two;
  // null for Model::from_tensors, whose caller owns the buffers.
  Builder(Model::Impl& m, const std::map<std::string, Tensor>& src, const SafetensorsFile* release)
      : m_(m), src_(src), release_(release) {}

  // The weights of layer `prefix` (rank 2: linear, 4: conv) at the precision layer_precision()
  // gives: converted / quantised here from F32/F16/BF16, or taken as stored from a quantised
  // checkpoint (I8 + "<name>_scale"; an I8 layer run at a higher precision is dequantised).
  Result<LayerWeights> layer_weights(const std::string& prefix, const Shape& shape) {
    const std::string wname = prefix + ".weight";
    Precision p = layer_precision(wname, static_cast<int>(shape.size()), m_.precision);
    // int8 mode without bf16 convolutions: the weights are still bf16 values (as a `duet
    // quantize` checkpoint stores them, so both give the same model on every CPU), widened to
    // fp32 for an fp32 convolution.
    const bool widen_bf16 =
        p == Precision::kBF16 && m_.precision == Precision::kInt8 && !m_.int8_bf16_convs;
    if (widen_bf16) p = Precision::kF32;
    ++m_.layer_counts[static_cast<int>(p)];
    auto it = src_.find(wname);
    if (it == src_.end()) return not_found("checkpoint is missing tensor '" + wname + "'");
    const Tensor& t = it->second;
    const int64_t out = shape[0], per_out = t.numel() / std::max<int64_t>(1, out);
    LayerWeights lw;
    lw.precision = p;
    const float* f32 = nullptr;
    if (t.dtype() == DType::kI8) {
      if (t.shape() != shape)
        return invalid_argument("tensor '" + wname + "' has shape " + shape_string(t.shape()) +
                                ", the config needs " + shape_string(shape));
      used_.insert(wname);
      DUET_ASSIGN_OR_RETURN(const float* scale, get(wname + kScaleSuffix, {out}, false));
      if (p == Precision::kInt8) {
        lw.s8 = t.as<int8_t>();
        lw.scale = scale;
        return lw;
      }
      Tensor f = Tensor::zeros(shape);
      ops::dequantize_rows_int8(t.as<int8_t>(), scale, out, per_out, f.f32());
      scratch_.push_back(f);
      f32 = f.f32();
    } else if (p == Precision::kBF16 && t.dtype() == DType::kBF16 && t.shape() == shape) {
      used_.insert(wname);
      lw.bf16 = t.as<uint16_t>();  // stored bf16: used as is
      return lw;
    } else {
      DUET_ASSIGN_OR_RETURN(f32, get(wname, shape, false));
    }
    const int64_t n = out * per_out;
    switch (p) {
      case Precision::kF32:
        if (widen_bf16 && t.dtype() != DType::kBF16) {
          Tensor r = Tensor::zeros(shape);
          for (int64_t i = 0; i < n; ++i) r.f32()[i] = ops::round_bf16(f32[i]);
          scratch_.push_back(r);
          f32 = r.f32();
        }
        lw.f32 = f32;
        break;
      case Precision::kBF16: {
        Tensor q = Tensor::zeros(shape, DType::kBF16);
        ops::to_bf16(f32, n, q.as<uint16_t>());
        scratch_.push_back(q);
        lw.bf16 = q.as<uint16_t>();
        break;
      }
      case Precision::kInt8: {
        Tensor q = Tensor::zeros(shape, DType::kI8), sc = Tensor::zeros({out});
        ops::quantize_rows_int8(f32, out, per_out, q.as<int8_t>(), sc.f32());
        scratch_.push_back(q);
        scratch_.push_back(sc);
        lw.s8 = q.as<int8_t>();
        lw.scale = sc.f32();
        break;
      }
    }
    return lw;
  }

  // The fp32 data of `name` with exactly `shape`, converted once if F16/BF16. keep: store it in
  // Impl::store (norms / embeddings used directly); otherwise it is only needed while preparing.
  Result<const float*> get(const std::string& name, const Shape& shape, bool keep) {
    auto it = src_.find(name);
    if (it == src_.end()) return not_found("checkpoint is missing tensor '" + name + "'");
    const Tensor& t = it->second;
    if (t.shape() != shape)
      return invalid_argument("tensor '" + name + "' has shape " + shape_string(t.shape()) +
                              ", the config needs " + shape_string(shape));
    used_.insert(name);
    Tensor f;
    if (t.dtype() == DType::kF32 && !keep) {
      f = t;  // view is enough for packing
    } else {
      DUET_ASSIGN_OR_RETURN(f, to_f32(t));
    }
    if (keep) {  // used by the ops directly: uploaded once into backend memory
      DUET_ASSIGN_OR_RETURN(m_.store[name], upload_tensor(*m_.be, f));
      return m_.store[name].f32();
    }
    scratch_.push_back(f);
    return scratch_.back().f32();
  }

  Result<LinearPtr> linear(const std::string& prefix, int64_t out, int64_t in,
                           Activation act = Activation::kNone) {
    DUET_ASSIGN_OR_RETURN(LayerWeights w, layer_weights(prefix, {out, in}));
    DUET_ASSIGN_OR_RETURN(const float* b, get(prefix + ".bias", {out}, false));
    auto r = m_.be->prepare_linear_weights(w, b, out, in, act);
    scratch_.clear();
    if (release_) release_->release_pages(prefix + ".weight");  // packed: see the constructor
    return r;
  }

  Result<ConvPtr> conv(const std::string& prefix, ConvDesc d) {
    DUET_ASSIGN_OR_RETURN(LayerWeights w, layer_weights(prefix, {d.cout, d.cin, d.k, d.k}));
    DUET_ASSIGN_OR_RETURN(const float* b, get(prefix + ".bias", {d.cout}, false));
    auto r = m_.be->prepare_conv_weights(w, b, d);
    scratch_.clear();
    if (release_) release_->release_pages(prefix + ".weight");
    return r;
  }

  Result<NormW> norm(const std::string& prefix, int64_t c) {
    NormW n;
    DUET_ASSIGN_OR_RETURN(n.gamma, get(prefix + ".weight", {c}, true));
    DUET_ASSIGN_OR_RETURN(n.beta, get(prefix + ".bias", {c}, true));
    return n;
  }

  Result<ResBlockW> resblock(const std::string& pre, int64_t cin, int64_t cout, ResMode mode) {
    const ModelConfig& cfg = m_.cfg;
    const int64_t D = cfg.backbone.width, ct = cfg.refiner.time_channels;
    ResBlockW r;
    r.mode = mode;
    r.cin = cin;
    r.cout = cout;
    DUET_ASSIGN_OR_RETURN(r.norm1, norm(pre + ".norm1", cin));
    DUET_ASSIGN_OR_RETURN(r.conv1, conv(pre + ".conv1", conv3(cin, cout)));
    const int64_t tp = mode == ResMode::kFilm ? 2 * cout : mode == ResMode::kGated ? 3 * cout : ct;
    DUET_ASSIGN_OR_RETURN(r.t_proj, linear(pre + ".t_proj", tp, D));
    if (mode == ResMode::kConcat) {
      DUET_ASSIGN_OR_RETURN(r.t_mix, conv(pre + ".t_mix", conv1(cout + ct, cout)));
    }
    DUET_ASSIGN_OR_RETURN(r.norm2, norm(pre + ".norm2", cout));
    DUET_ASSIGN_OR_RETURN(r.conv2, conv(pre + ".conv2", conv3(cout, cout)));
    if (cin != cout) {
      DUET_ASSIGN_OR_RETURN(r.skip, conv(pre + ".skip", conv1(cin, cout)));
    }
    DUET_ASSIGN_OR_RETURN(r.att_c, linear(pre + ".att_c", cout, cout, Activation::kSigmoid));
    ConvDesc as = conv1(cout, cout);
    as.act = Activation::kSigmoid;
    DUET_ASSIGN_OR_RETURN(r.att_s, conv(pre + ".att_s", as));
    return r;
  }

  static ConvDesc conv3(int64_t cin, int64_t cout, int64_t stride = 1) {
    ConvDesc d;
    d.cin = cin;
    d.cout = cout;
    d.k = 3;
    d.stride = stride;
    d.pad = 1;
    return d;
  }
  static ConvDesc conv1(int64_t cin, int64_t cout) {
    ConvDesc d;
    d.cin = cin;
    d.cout = cout;
    return d;
  }

  Status check_all_used() const {
    for (const auto& [name, t] : src_)
      if (!used_.count(name))
        return invalid_argument("checkpoint has unexpected tensor '" + name + "'");
    return Status::ok();
  }

 private:
  Model::Impl& m_;
  const std::map<std::string, Tensor>& src_;
  const SafetensorsFile* release_;
  std::set<std::string> used_;
  std::vector<Tensor> scratch_;
};

Status build(Model::Impl& m, const std::map<std::string, Tensor>& src,
             const SafetensorsFile* release) {
  const ModelConfig& cfg = m.cfg;
  Builder b(m, src, release);
  const auto& tc = cfg.text;
  const auto& bc = cfg.backbone;
  const int64_t Dt = tc.width, D = bc.width, C = cfg.image.channels;
  // text encoder
  DUET_ASSIGN_OR_RETURN(m.tok_emb, b.get("text.tok_emb.weight", {tc.vocab_size, Dt}, true));
  DUET_ASSIGN_OR_RETURN(m.pos_emb, b.get("text.pos_emb", {tc.max_length, Dt}, true));
  for (int64_t i = 0; i < tc.layers; ++i) {
    const std::string pre = "text.blocks." + std::to_string(i);
    TextBlockW t;
    DUET_ASSIGN_OR_RETURN(t.ln1, b.norm(pre + ".ln1", Dt));
    DUET_ASSIGN_OR_RETURN(t.ln2, b.norm(pre + ".ln2", Dt));
    DUET_ASSIGN_OR_RETURN(t.qkv, b.linear(pre + ".attn.qkv", 3 * Dt, Dt));
    DUET_ASSIGN_OR_RETURN(t.proj, b.linear(pre + ".attn.proj", Dt, Dt));
    DUET_ASSIGN_OR_RETURN(t.fc1,
                          b.linear(pre + ".mlp.fc1", Dt * tc.mlp_ratio, Dt, Activation::kGeluTanh));
    DUET_ASSIGN_OR_RETURN(t.fc2, b.linear(pre + ".mlp.fc2", Dt, Dt * tc.mlp_ratio));
    m.text_blocks.push_back(std::move(t));
  }
  DUET_ASSIGN_OR_RETURN(m.ln_f, b.norm("text.ln_f", Dt));
  // conditioning + gate
  DUET_ASSIGN_OR_RETURN(m.t_fc1, b.linear("cond.t_mlp.fc1", D, kTimeEmbedDim, Activation::kSilu));
  DUET_ASSIGN_OR_RETURN(m.t_fc2, b.linear("cond.t_mlp.fc2", D, D));
  DUET_ASSIGN_OR_RETURN(m.pool_proj, b.linear("cond.pool_proj", D, Dt));
  DUET_ASSIGN_OR_RETURN(
      m.gate_fc1, b.linear("gate.mlp.fc1", cfg.gate.hidden, kTimeEmbedDim, Activation::kSilu));
  DUET_ASSIGN_OR_RETURN(m.gate_fc2,
                        b.linear("gate.mlp.fc2", 1, cfg.gate.hidden, Activation::kSigmoid));
  // backbone
  ConvDesc pd;
  pd.cin = C;
  pd.cout = D;
  pd.k = pd.stride = bc.patch;
  pd.tokens_out = true;
  DUET_ASSIGN_OR_RETURN(m.patch, b.conv("backbone.patch", pd));
  for (int64_t i = 0; i < bc.depth; ++i) {
    const std::string pre = "backbone.blocks." + std::to_string(i);
    DiTBlockW k;
    DUET_ASSIGN_OR_RETURN(k.ada, b.linear(pre + ".ada", 6 * D, D));
    DUET_ASSIGN_OR_RETURN(k.qkv, b.linear(pre + ".attn.qkv", 3 * D, D));
    DUET_ASSIGN_OR_RETURN(k.proj, b.linear(pre + ".attn.proj", D, D));
    if (bc.slab(i)) {  // slab_attention.py: dwc = Conv2d(d, d, k, groups=d)
      const int64_t hd = D / bc.heads, ks = bc.slab_kernel;
      DUET_ASSIGN_OR_RETURN(k.dwc_w, b.get(pre + ".attn.dwc.weight", {hd, 1, ks, ks}, true));
      DUET_ASSIGN_OR_RETURN(k.dwc_b, b.get(pre + ".attn.dwc.bias", {hd}, true));
    }
    if (bc.cswin(i)) {  // cswin_attention.py: lepe = Conv2d(D, D, k, groups=D)
      const int64_t ks = bc.cswin_kernel;
      DUET_ASSIGN_OR_RETURN(k.dwc_w, b.get(pre + ".attn.lepe.weight", {D, 1, ks, ks}, true));
      DUET_ASSIGN_OR_RETURN(k.dwc_b, b.get(pre + ".attn.lepe.bias", {D}, true));
    }
    k.repbn = bc.repbn(i);
    if (!k.repbn) {
      DUET_ASSIGN_OR_RETURN(k.ln_c, b.norm(pre + ".ln_c", D));
    }
    DUET_ASSIGN_OR_RETURN(k.q, b.linear(pre + ".cross.q", D, D));
    DUET_ASSIGN_OR_RETURN(k.k, b.linear(pre + ".cross.k", D, Dt));
    DUET_ASSIGN_OR_RETURN(k.v, b.linear(pre + ".cross.v", D, Dt));
    DUET_ASSIGN_OR_RETURN(k.cproj, b.linear(pre + ".cross.proj", D, D));
    DUET_ASSIGN_OR_RETURN(k.sem_gate, b.linear(pre + ".sem_gate", D, Dt, Activation::kSigmoid));
    DUET_ASSIGN_OR_RETURN(k.fc1,
                          b.linear(pre + ".mlp.fc1", D * bc.mlp_ratio, D, Activation::kGeluTanh));
    DUET_ASSIGN_OR_RETURN(k.fc2, b.linear(pre + ".mlp.fc2", D, D * bc.mlp_ratio));
    m.blocks.push_back(std::move(k));
  }
  DUET_ASSIGN_OR_RETURN(m.final_ada, b.linear("backbone.final.ada", 2 * D, D));
  DUET_ASSIGN_OR_RETURN(m.final_linear, b.linear("backbone.final.linear", cfg.patch_dim(), D));
  // refiner
  const auto& rc = cfg.refiner;
  const std::vector<int64_t> ch = cfg.level_channels();
  const int64_t levels = static_cast<int64_t>(ch.size());
  DUET_ASSIGN_OR_RETURN(m.conv_in,
                        b.conv("refiner.conv_in", Builder::conv3(2 * C, rc.base_channels)));
  int64_t cin = rc.base_channels;
  for (int64_t i = 0; i < levels; ++i) {
    DUET_ASSIGN_OR_RETURN(
        ResBlockW r, b.resblock("refiner.enc." + std::to_string(i), cin, ch[i], ResMode::kFilm));
    m.enc.push_back(std::move(r));
    if (i < levels - 1) {
      DUET_ASSIGN_OR_RETURN(
          ConvPtr d, b.conv("refiner.down." + std::to_string(i), Builder::conv3(ch[i], ch[i], 2)));
      m.down.push_back(std::move(d));
    }
    cin = ch[i];
  }
  DUET_ASSIGN_OR_RETURN(m.mid, b.resblock("refiner.mid", ch.back(), ch.back(), ResMode::kConcat));
  const auto& cf = rc.carafe;
  for (int64_t j = 0; j + 1 < levels; ++j) {
    const int64_t i = levels - 2 - j;
    const std::string js = std::to_string(j);
    CarafeW u;
    DUET_ASSIGN_OR_RETURN(
        u.comp, b.conv("refiner.up." + js + ".comp", Builder::conv1(ch[i + 1], cf.compress)));
    ConvDesc ed = Builder::conv3(cf.compress, cf.scale * cf.scale * cf.k_up * cf.k_up);
    ed.k = cf.k_enc;
    ed.pad = cf.k_enc / 2;
    DUET_ASSIGN_OR_RETURN(u.enc, b.conv("refiner.up." + js + ".enc", ed));
    m.up.push_back(std::move(u));
    DUET_ASSIGN_OR_RETURN(ConvPtr f,
                          b.conv("refiner.fuse." + js, Builder::conv1(ch[i + 1] + ch[i], ch[i])));
    m.fuse.push_back(std::move(f));
    DUET_ASSIGN_OR_RETURN(ResBlockW r,
                          b.resblock("refiner.dec." + js, ch[i], ch[i], ResMode::kGated));
    m.dec.push_back(std::move(r));
  }
  DUET_ASSIGN_OR_RETURN(m.norm_out, b.norm("refiner.norm_out", ch[0]));
  DUET_ASSIGN_OR_RETURN(m.conv_out, b.conv("refiner.conv_out", Builder::conv3(ch[0], C)));
  return b.check_all_used();
}

}  // namespace

Result<std::shared_ptr<const Model>> Model::from_tensors(
    const ModelConfig& cfg, const std::map<std::string, Tensor>& tensors, const LoadOptions& opts) {
  return build_from(cfg, tensors, opts, nullptr);
}

Result<std::shared_ptr<const Model>> Model::build_from(const ModelConfig& cfg,
                                                       const std::map<std::string, Tensor>& tensors,
                                                       const LoadOptions& opts,
                                                       const SafetensorsFile* release_from) {
  DUET_RETURN_IF_ERROR(validate_config(cfg));
  std::shared_ptr<Model> model(new Model());
  Impl& m = *model->impl_;
  m.cfg = cfg;
  m.kind = opts.backend;
  m.int8_bf16_convs = opts.int8_bf16_convs;
  if (opts.backend == BackendKind::kCpu) {
    DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
    m.int8_bf16_convs = m.int8_bf16_convs && cpu->bf16_compute;
    DUET_RETURN_IF_ERROR(cpu_precision_support(opts.precision, *cpu));
  }
  DUET_ASSIGN_OR_RETURN(m.be, find_backend(opts.backend));  // kCuda: built in, GPU present
  m.info.name = cfg.name;
  m.info.backend = m.be->name();
  m.precision = opts.precision;
  std::set<std::string> dtypes;
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::kF32 && t.dtype() != DType::kF16 && t.dtype() != DType::kBF16 &&
        t.dtype() != DType::kI8)
      return invalid_argument("tensor '" + name + "' has dtype " + dtype_name(t.dtype()) +
                              "; weights must be F32, F16, BF16 or (quantised) I8");
    if (is_scale_tensor(name)) continue;  // quantisation scales are not parameters
    dtypes.insert(dtype_name(t.dtype()));
    m.info.parameters += t.numel();
    const std::string branch = name.substr(0, name.find('.'));
    m.info.branch_parameters[branch] += t.numel();
  }
  for (const auto& d : dtypes) {
    if (!m.info.weight_dtypes.empty()) m.info.weight_dtypes += "+";
    m.info.weight_dtypes += d;
  }
  if (opts.precision == Precision::kF32 &&
      (dtypes.count("F16") || dtypes.count("BF16") || dtypes.count("I8"))) {
    m.info.weight_dtypes += " (converted to F32 at load)";
    m.info.notes.push_back("weights stored as " + m.info.weight_dtypes + "; all compute is fp32");
  }
  DUET_RETURN_IF_ERROR(build(m, tensors, release_from));
  if (opts.precision == Precision::kInt8 && !m.int8_bf16_convs)
    m.info.notes.push_back(opts.int8_bf16_convs
                               ? "precision int8: convolutions run fp32 (this CPU has no bf16 "
                                 "compute: oneDNN's bf16 kernels need AVX-512)"
                               : "precision int8: convolutions run fp32 (int8_bf16_convs off)");
  if (opts.precision != Precision::kF32) {
    m.info.notes.push_back(std::string("precision ") + precision_name(opts.precision) + ": " +
                           std::to_string(m.layer_counts[2]) + " layers int8, " +
                           std::to_string(m.layer_counts[1]) + " bf16, " +
                           std::to_string(m.layer_counts[0]) +
                           " fp32 (weight-bearing layers; norms, attention, FFT, CARAFE fp32)");
  }
  return std::shared_ptr<const Model>(std::move(model));
}

Result<std::shared_ptr<const Model>> Model::load(const std::string& dir, const LoadOptions& opts) {
  if (opts.backend == BackendKind::kCuda) DUET_RETURN_IF_ERROR(cuda_backend_status());
  if (opts.backend == BackendKind::kCpu) {  // before the file: the CPU, not the file, is at fault
    DUET_ASSIGN_OR_RETURN(const CpuInfo* cpu, cpu_info());
    DUET_RETURN_IF_ERROR(cpu_precision_support(opts.precision, *cpu));
  }
  DUET_ASSIGN_OR_RETURN(ModelConfig cfg, load_config(dir + "/config.json"));
  DUET_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::open(dir + "/model.safetensors"));
  DUET_ASSIGN_OR_RETURN(std::optional<Precision> stored, checkpoint_precision(dir));
  if (stored || is_quantized_checkpoint(file)) {
    DUET_RETURN_IF_ERROR(check_quantized_checkpoint(file, cfg));
  } else {
    DUET_RETURN_IF_ERROR(check_checkpoint(file, cfg));
  }
  std::map<std::string, Tensor> tensors;
  for (const TensorEntry& e : file.tensors()) {
    if (e.dtype == DType::kF32 || e.dtype == DType::kF16 || e.dtype == DType::kBF16 ||
        e.dtype == DType::kI8) {
      if (e.aligned()) {
        tensors[e.name] = file.view(e.name);
      } else {
        DUET_ASSIGN_OR_RETURN(tensors[e.name], file.load_f32(e.name));
      }
    } else {
      return invalid_argument(file.name() + ": tensor '" + e.name + "' has dtype " +
                              dtype_name(e.dtype) + "; weights must be F32, F16, BF16 or I8");
    }
  }
  auto r = build_from(cfg, tensors, opts, &file);
  if (!r.is_ok())
    return Status(r.status().code(), dir + "/model.safetensors: " + r.status().message());
  return r;
}

}  // namespace duet
