// Context: planning (workspace measurement, high-pass plan, pos embedding) and denoise — the
// orchestration of model.py DuetModel.forward: conditioning, backbone, refiner, HP, gate, fusion.
#include <cstring>

#include "model/backbone_cache_state.h"
#include "model/context_state.h"

namespace duet {

Context::Context() : s_(std::make_unique<State>()) {}
Context::~Context() = default;

namespace {
// Members of a cached call: a cache made for this Context's shape, disjoint rows inside [0, B).
Status check_cache_members(const Context::State& s, std::span<CacheMember> members, int64_t B) {
  const ModelConfig& cfg = s.m->cfg;
  const int64_t N = (s.H / cfg.backbone.patch) * (s.W / cfg.backbone.patch);
  for (size_t i = 0; i < members.size(); ++i) {
    const CacheMember& a = members[i];
    if (!a.cache)
      return invalid_argument("denoise: cache member " + std::to_string(i) + " has no cache");
    BackboneCache::State& c = a.cache->state();
    if (c.be != s.be || c.N != N || c.D != cfg.backbone.width || c.depth != cfg.backbone.depth)
      return invalid_argument("denoise: cache member " + std::to_string(i) +
                              " was made for another model or image size");
    if (a.rows < 1 || a.row0 < 0 || a.row0 + a.rows > B || a.rows > c.cap_rows)
      return invalid_argument("denoise: cache member " + std::to_string(i) + " rows [" +
                              std::to_string(a.row0) + ", " + std::to_string(a.row0 + a.rows) +
                              ") outside the call's " + std::to_string(B) +
                              " rows or over its cache's " + std::to_string(c.cap_rows));
    for (size_t j = 0; j < i; ++j) {
      const CacheMember& b = members[j];
      if (b.cache == a.cache || (a.row0 < b.row0 + b.rows && b.row0 < a.row0 + a.rows))
        return invalid_argument("denoise: cache members " + std::to_string(j) + " and " +
                                std::to_string(i) + " overlap or share a cache");
    }
  }
  return Status::ok();
}

Tensor batch_view(const Tensor& t, int64_t b) {
  if (t.empty() || b == 0) return Tensor{};
  Shape sh = t.shape();
  sh[0] = b;
  return Tensor::view(t.raw(), sh, t.dtype());
}
}  // namespace

void Context::State::hook_view(std::string_view name, const float* data, const Shape& shape) const {
  if (be->host_visible()) {
    hook(name, Tensor::view(data, shape));
    return;
  }
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  hook_scratch.resize(static_cast<size_t>(n));
  be->download(hook_scratch.data(), data, sizeof(float) * static_cast<size_t>(n));
  hook(name, Tensor::view(hook_scratch.data(), shape));
}

// The first b rows of a backend output, as host memory (a download on first access after a
// call where the backend is not host-visible; the mirror was allocated by Context::create).
Tensor Context::State::host_rows(const Tensor& t, Mirror& m, int64_t b) const {
  if (b == 0 || t.empty()) return Tensor{};
  if (be->host_visible()) return batch_view(t, b);
  if (m.stale) {
    be->download(m.host.raw(), t.raw(), t.nbytes());
    m.stale = false;
  }
  return batch_view(m.host, b);
}

void Context::copy_eps(float* out) const {
  const State& s = *s_;
  const size_t bytes = sizeof(float) * static_cast<size_t>(s.last_b * s.eps.numel() / s.max_b);
  s.be->download(out, s.eps.raw(), bytes);  // a memcpy on host-visible backends
}

Tensor Context::eps() const { return s_->host_rows(s_->eps, s_->h_eps, s_->last_b); }
Tensor Context::eps_s() const { return s_->host_rows(s_->eps_s, s_->h_eps_s, s_->last_b); }
Tensor Context::c() const { return s_->host_rows(s_->c, s_->h_c, s_->last_b); }
Tensor Context::r() const { return s_->host_rows(s_->r, s_->h_r, s_->last_refined); }
Tensor Context::eps_d() const { return s_->host_rows(s_->eps_d, s_->h_eps_d, s_->last_refined); }
Tensor Context::alpha() const { return s_->host_rows(s_->alpha, s_->h_alpha, s_->last_refined); }
void Context::set_hook(IntermediateHook hook) { s_->hook = std::move(hook); }
const Model& Context::model() const { return *s_->model; }
int64_t Context::max_batch() const { return s_->max_b; }
int64_t Context::height() const { return s_->H; }
int64_t Context::width() const { return s_->W; }
size_t Context::workspace_bytes() const { return s_->ws.capacity_bytes(); }

Result<std::unique_ptr<Context>> Context::create(std::shared_ptr<const Model> model,
                                                 const ContextOptions& opts) {
  if (!model) return invalid_argument("Context::create: null model");
  const ModelConfig& cfg = model->config();
  std::unique_ptr<Context> ctx(new Context());
  State& s = *ctx->s_;
  s.m = &model->impl();
  s.be = s.m->be;
  s.model = std::move(model);
  s.max_b = opts.max_batch;
  s.H = opts.height ? opts.height : cfg.image.height;
  s.W = opts.width ? opts.width : cfg.image.width;
  DUET_RETURN_IF_ERROR(check_context_options(cfg, s.max_b, s.H, s.W));
  const int64_t limit = opts.max_workspace_bytes;
  auto over_limit = [&](int64_t need) {
    return resource_exhausted("Context::create: workspace for batch " + std::to_string(s.max_b) +
                              " × " + std::to_string(s.W) + "×" + std::to_string(s.H) + " needs " +
                              format_bytes(need) + ", over the " + format_bytes(limit) +
                              " limit (--max-memory)");
  };
  if (limit < 0) return invalid_argument("Context::create: max_workspace_bytes must be >= 0");
  if (limit > 0) {
    DUET_ASSIGN_OR_RETURN(const int64_t need, estimate_bytes(*s.model, opts));
    if (need > limit) return over_limit(need);
    s.ws.set_limit(static_cast<size_t>(limit));
  }
  const int64_t B = s.max_b, C = cfg.image.channels, D = cfg.backbone.width;
  const Backend& be = *s.be;
  s.ws.set_allocator([&be](size_t bytes) -> std::shared_ptr<void> {
    auto buf = be.alloc(bytes);
    if (!buf.is_ok()) return nullptr;
    void* p = buf.value()->data();
    return std::shared_ptr<void>(std::move(buf).value(), p);  // aliasing: owns the buffer
  });
  const Shape image{B, C, s.H, s.W};
  DUET_ASSIGN_OR_RETURN(s.c, backend_tensor(be, {B, D}));
  DUET_ASSIGN_OR_RETURN(s.eps_s, backend_tensor(be, image));
  DUET_ASSIGN_OR_RETURN(s.r, backend_tensor(be, image));
  DUET_ASSIGN_OR_RETURN(s.eps_d, backend_tensor(be, image));
  DUET_ASSIGN_OR_RETURN(s.eps, backend_tensor(be, image));
  DUET_ASSIGN_OR_RETURN(s.alpha, backend_tensor(be, {B}));
  if (!be.host_visible()) {
    DUET_ASSIGN_OR_RETURN(s.x_in, backend_tensor(be, image));
    DUET_ASSIGN_OR_RETURN(s.t_in, backend_tensor(be, {B}));
    for (auto [mirror, t] : {std::pair{&s.h_c, &s.c},
                             {&s.h_eps_s, &s.eps_s},
                             {&s.h_r, &s.r},
                             {&s.h_eps_d, &s.eps_d},
                             {&s.h_eps, &s.eps},
                             {&s.h_alpha, &s.alpha}})
      mirror->host = Tensor::zeros(t->shape());
  }
  {
    const int64_t gh = s.H / cfg.backbone.patch, gw = s.W / cfg.backbone.patch;
    std::vector<float> pos = ops::pos_embed_2d(D, gh, gw);
    DUET_ASSIGN_OR_RETURN(s.pos, upload_tensor(be, Tensor::view(pos.data(), {gh * gw, D})));
  }
  s.hp_mask = ops::highpass_mask(s.H, s.W, cfg.highpass.rho_c, cfg.highpass.tau);
  DUET_ASSIGN_OR_RETURN(s.spectral, s.be->plan_spectral(s.H, s.W, s.hp_mask.data()));

  // Warm-up evaluation at the planned maximum: measures the workspace peak and makes the
  // backend create its per-shape primitives, so later calls neither allocate nor plan. The
  // measuring workspace throws WorkspaceExhausted instead of aborting (and stops at the limit).
  auto fail = [&](const WorkspaceExhausted& e) {
    if (e.over_limit) return over_limit(static_cast<int64_t>(e.total_bytes));
    return resource_exhausted("Context::create: out of memory allocating " +
                              format_bytes(static_cast<int64_t>(e.requested_bytes)) +
                              " of workspace for batch " + std::to_string(B) + " at " +
                              std::to_string(s.W) + "x" + std::to_string(s.H));
  };
  try {
    DUET_ASSIGN_OR_RETURN(PromptState ps, s.model->encode_prompt(std::vector<std::string>(B, "")));
    Tensor x = Tensor::zeros({B, C, s.H, s.W}), t = Tensor::zeros({B});
    DUET_RETURN_IF_ERROR(ctx->denoise(x, t, ps, true));
  } catch (const WorkspaceExhausted& e) {
    return fail(e);
  } catch (const std::bad_alloc&) {
    return resource_exhausted("Context::create: out of memory planning batch " + std::to_string(B) +
                              " at " + std::to_string(s.W) + "x" + std::to_string(s.H));
  }
  if (!s.ws.commit())
    return resource_exhausted("Context::create: cannot allocate " +
                              format_bytes(static_cast<int64_t>(s.ws.peak_bytes())) +
                              " of workspace for batch " + std::to_string(B) + " at " +
                              std::to_string(s.W) + "x" + std::to_string(s.H));
  s.last_b = 0;
  return ctx;
}

Status Context::denoise(const Tensor& x_t, const Tensor& t, const PromptState& ps, bool refine) {
  const int64_t B = x_t.rank() == 4 ? x_t.dim(0) : 0;  // a bad x_t is reported by denoise_rows
  return denoise_rows(x_t, t, ps, refine ? B : 0);
}

Status Context::denoise_rows(const Tensor& x_t, const Tensor& t, const PromptState& ps,
                             int64_t refine_rows) {
  return denoise_cached(x_t, t, ps, refine_rows, {});
}

Status Context::denoise_cached(const Tensor& x_t, const Tensor& t, const PromptState& ps,
                               int64_t refine_rows, std::span<CacheMember> members) {
  State& s = *s_;
  const Model::Impl& m = *s.m;
  const Backend& be = *s.be;
  const ModelConfig& cfg = m.cfg;
  const int64_t C = cfg.image.channels, D = cfg.backbone.width;
  if (x_t.dtype() != DType::kF32 || x_t.rank() != 4 || x_t.dim(1) != C || x_t.dim(2) != s.H ||
      x_t.dim(3) != s.W || x_t.dim(0) < 1 || x_t.dim(0) > s.max_b)
    return invalid_argument("denoise: x_t must be F32 [B, " + std::to_string(C) + ", " +
                            std::to_string(s.H) + ", " + std::to_string(s.W) +
                            "] with 1 <= B <= " + std::to_string(s.max_b) + ", got " +
                            dtype_name(x_t.dtype()) + " " + shape_string(x_t.shape()));
  const int64_t B = x_t.dim(0);
  if (t.dtype() != DType::kF32 || t.rank() != 1 || t.dim(0) != B)
    return invalid_argument("denoise: t must be F32 [" + std::to_string(B) + "], got " +
                            dtype_name(t.dtype()) + " " + shape_string(t.shape()));
  if (ps.batch != B || ps.k.size() != m.blocks.size() || ps.v.size() != m.blocks.size() ||
      ps.sem.size() != m.blocks.size() || ps.p.empty() || ps.key_mask.numel() != B * ps.length)
    return invalid_argument("denoise: prompt state has batch " + std::to_string(ps.batch) +
                            " but x_t has batch " + std::to_string(B) +
                            " (or the state is not from this model)");
  if (refine_rows < 0 || refine_rows > B)
    return invalid_argument("denoise: refine_rows must be in [0, " + std::to_string(B) + "], got " +
                            std::to_string(refine_rows));
  DUET_RETURN_IF_ERROR(check_cache_members(s, members, B));
  s.last_b = B;
  s.last_refined = 0;
  for (auto* mirror : {&s.h_c, &s.h_eps_s, &s.h_r, &s.h_eps_d, &s.h_eps, &s.h_alpha})
    mirror->stale = true;
  const int64_t per = C * s.H * s.W;
  WorkspaceScope scope(s.ws);
  // The host boundary: x_t and t are host arrays; a device backend gets them uploaded once.
  const float* x = x_t.f32();
  const float* tt = t.f32();
  if (!be.host_visible()) {
    be.upload(s.x_in.raw(), x, sizeof(float) * B * per);
    be.upload(s.t_in.raw(), tt, sizeof(float) * B);
    x = s.x_in.f32();
    tt = s.t_in.f32();
  }

  // c = t_mlp(sinusoid(t)) + pool_proj(p)   [B, D]
  float* sin = s.ws.alloc(B * kTimeEmbedDim);
  be.timestep_sinusoid(tt, B, kTimeEmbedDim, 10000.0, sin);
  s.emit("t_sinusoid", sin, B, kTimeEmbedDim);
  float* tmp = s.ws.alloc(B * std::max(D, cfg.gate.hidden));
  float* pp = s.ws.alloc(B * D);
  float* c = s.c.f32();
  be.linear(*m.t_fc1, sin, B, tmp);  // SiLU fused
  be.linear(*m.t_fc2, tmp, B, c);
  be.linear(*m.pool_proj, ps.p.f32(), B, pp);
  be.add(c, pp, 1, B * D);
  s.emit("c", c, B, D);
  float* c_silu = s.ws.alloc(B * D);
  be.silu(c, c_silu, B * D);

  backbone_forward(s, x, B, c_silu, ps, s.eps_s.f32(), members);
  s.emit("eps_s", s.eps_s.f32(), B, C, s.H, s.W);
  // Rows [R, B) take the backbone's prediction as is.
  const int64_t R = refine_rows;
  be.copy(s.eps.f32() + R * per, s.eps_s.f32() + R * per, sizeof(float) * (B - R) * per);
  if (R == 0) {
    s.emit("eps", s.eps.f32(), B, C, s.H, s.W);
    return Status::ok();
  }
  // Rows [0, R): refiner, gate and fusion. Every op here is per row, so these rows get what a
  // call over them alone would give them.
  refiner_forward(s, x, s.eps_s.f32(), R, c, c_silu, s.r.f32());
  s.emit("r", s.r.f32(), R, C, s.H, s.W);
  s.spectral->highpass(s.r.f32(), R * C, s.eps_d.f32());  // eps_d = HP(r)
  s.emit("eps_d", s.eps_d.f32(), R, C, s.H, s.W);
  float* hp_s = s.ws.alloc(R * per);
  s.spectral->highpass(s.eps_s.f32(), R * C, hp_s);
  s.emit("hp_s", hp_s, R, C, s.H, s.W);
  // alpha = sigmoid(fc2(SiLU(fc1(sinusoid(t)))))   [R]
  be.linear(*m.gate_fc1, sin, R, tmp);
  be.linear(*m.gate_fc2, tmp, R, s.alpha.f32());  // sigmoid fused
  s.emit("alpha", s.alpha.f32(), R);
  be.fuse(s.eps_s.f32(), hp_s, s.eps_d.f32(), s.alpha.f32(), R, per, s.eps.f32());
  s.emit("eps", s.eps.f32(), B, C, s.H, s.W);
  s.last_refined = R;
  return Status::ok();
}

}  // namespace duet
