// load_denoiser(): duet::Model / duet::Context behind the pipeline's Denoiser interface.
#include <omp.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "duet/cpu_load.h"
#include "pipeline/model_denoiser.h"

namespace duet {
namespace {

class ModelPrompt : public PromptEmbedding {
 public:
  explicit ModelPrompt(PromptState s) : state(std::move(s)) {}
  int batch() const override { return static_cast<int>(state.batch); }
  PromptState state;
};

class ModelCache : public DenoiserCache {
 public:
  explicit ModelCache(std::unique_ptr<BackboneCache> c) : cache(std::move(c)) {}
  const CacheStats& stats() const override { return cache->stats(); }
  std::unique_ptr<BackboneCache> cache;
};

class ModelDenoiser : public Denoiser {
 public:
  static constexpr size_t kMaxMembers = 256;  // cached requests in one call
  explicit ModelDenoiser(std::shared_ptr<const Model> m) : model_(std::move(m)) {
    const ModelConfig& c = model_->config();
    info_.name = c.name;
    info_.channels = static_cast<int>(c.image.channels);
    info_.height = static_cast<int>(c.image.height);
    info_.width = static_cast<int>(c.image.width);
    info_.patch = static_cast<int>(c.backbone.patch);
    info_.refiner_stride = static_cast<int>(c.refiner_stride());
    info_.num_train_timesteps = static_cast<int>(c.diffusion.num_train_timesteps);
    info_.beta_schedule = c.diffusion.beta_schedule;
    info_.prediction_type = c.diffusion.prediction_type;
    info_.refine_every = static_cast<int>(c.inference.refine_every);
    info_.cfg_scale = static_cast<float>(c.inference.cfg_scale);
    info_.supports_other_sizes = true;
    info_.depth = static_cast<int>(c.backbone.depth);
    members_.reserve(kMaxMembers);
  }

  const DenoiserInfo& info() const override { return info_; }

  Result<std::unique_ptr<PromptEmbedding>> encode(const std::vector<std::string>& texts) override {
    DUET_ASSIGN_OR_RETURN(PromptState ps, model_->encode_prompt(texts));
    return std::unique_ptr<PromptEmbedding>(std::make_unique<ModelPrompt>(std::move(ps)));
  }

  Result<std::unique_ptr<PromptEmbedding>> concat(
      const std::vector<const PromptEmbedding*>& rows) override {
    std::vector<const PromptState*> states;
    for (const PromptEmbedding* e : rows) {
      if (!e) return invalid_argument("concat: null prompt embedding");
      states.push_back(&static_cast<const ModelPrompt*>(e)->state);
    }
    DUET_ASSIGN_OR_RETURN(PromptState ps, model_->concat_prompts(states));
    return std::unique_ptr<PromptEmbedding>(std::make_unique<ModelPrompt>(std::move(ps)));
  }

  int64_t embedding_bytes(const PromptEmbedding& e) const override {
    const PromptState& s = static_cast<const ModelPrompt&>(e).state;
    int64_t b = static_cast<int64_t>(s.ids.nbytes() + s.mask.nbytes() + s.E.nbytes() +
                                     s.p.nbytes() + s.key_mask.nbytes());
    for (const auto* list : {&s.k, &s.v, &s.sem})
      for (const Tensor& t : *list) b += static_cast<int64_t>(t.nbytes());
    return b;
  }

  void set_memory_limit(int64_t bytes) override { memory_limit_ = bytes > 0 ? bytes : 0; }

  Result<int64_t> estimate_bytes(int batch, int height, int width) const override {
    ContextOptions co;
    co.max_batch = batch;
    co.height = height;
    co.width = width;
    return Context::estimate_bytes(*model_, co);
  }

  Status prepare(int batch, int height, int width) override {
    if (ctx_ && ctx_->max_batch() >= batch && ctx_->height() == height && ctx_->width() == width)
      return Status::ok();
    ContextOptions co;
    co.max_batch = batch;
    co.height = height;
    co.width = width;
    co.max_workspace_bytes = memory_limit_;
    ctx_.reset();
    DUET_ASSIGN_OR_RETURN(ctx_, Context::create(model_, co));
    x_ptr_ = t_ptr_ = nullptr;
    return Status::ok();
  }

  Status denoise(const float* x, const float* t, int batch, int height, int width,
                 const PromptEmbedding& prompts, bool refine, float* out) override {
    return denoise_mixed(x, t, batch, height, width, prompts, refine ? batch : 0, out);
  }

  Status denoise_mixed(const float* x, const float* t, int batch, int height, int width,
                       const PromptEmbedding& prompts, int refine_rows, float* out) override {
    return denoise_cached(x, t, batch, height, width, prompts, refine_rows, {}, out);
  }

  Result<std::unique_ptr<DenoiserCache>> make_cache(const CacheSpec& spec, int rows) override {
    if (!ctx_) return internal_error("make_cache called before prepare");
    DUET_ASSIGN_OR_RETURN(std::unique_ptr<BackboneCache> c,
                          BackboneCache::create(*ctx_, spec, rows));
    return std::unique_ptr<DenoiserCache>(std::make_unique<ModelCache>(std::move(c)));
  }

  Status denoise_cached(const float* x, const float* t, int batch, int height, int width,
                        const PromptEmbedding& prompts, int refine_rows,
                        std::span<DenoiserCacheUse> uses, float* out) override {
    if (!ctx_) return internal_error("denoise called before prepare");
    if (uses.size() > kMaxMembers)
      return invalid_argument("denoise: more than " + std::to_string(kMaxMembers) +
                              " cached requests in one call");
    members_.clear();  // within the reserved capacity: no allocation
    for (const DenoiserCacheUse& u : uses) {
      if (!u.cache) return invalid_argument("denoise: a cached request without a cache");
      members_.push_back(
          {static_cast<ModelCache*>(u.cache)->cache.get(), u.row0, u.rows, u.eligible, false});
    }
    // Views are rebuilt only when the caller's buffers change (the pipeline's never do), so the
    // steady state allocates nothing.
    if (x != x_ptr_ || batch != batch_ || height != h_ || width != w_) {
      x_view_ = Tensor::view(x, {batch, info_.channels, height, width});
      x_ptr_ = x;
    }
    if (t != t_ptr_ || batch != batch_) {
      t_view_ = Tensor::view(t, {batch});
      t_ptr_ = t;
    }
    batch_ = batch;
    h_ = height;
    w_ = width;
    const auto& ps = static_cast<const ModelPrompt&>(prompts).state;
    DUET_RETURN_IF_ERROR(ctx_->denoise_cached(x_view_, t_view_, ps, refine_rows, members_));
    ctx_->copy_eps(out);  // [batch, C, H, W]: denoise_cached checked the shape
    for (size_t i = 0; i < uses.size(); ++i) uses[i].computed = members_[i].computed;
    return Status::ok();
  }

 private:
  std::shared_ptr<const Model> model_;
  std::unique_ptr<Context> ctx_;
  DenoiserInfo info_;
  Tensor x_view_, t_view_;
  const float* x_ptr_ = nullptr;
  const float* t_ptr_ = nullptr;
  int batch_ = 0, h_ = 0, w_ = 0;
  int64_t memory_limit_ = 0;
  std::vector<CacheMember> members_;  // denoise_cached's, reserved kMaxMembers
};

}  // namespace

std::unique_ptr<Denoiser> make_model_denoiser(std::shared_ptr<const Model> model) {
  return std::make_unique<ModelDenoiser>(std::move(model));
}

const PromptState& model_prompt_state(const PromptEmbedding& embedding) {
  return static_cast<const ModelPrompt&>(embedding).state;
}

Result<std::unique_ptr<Denoiser>> load_denoiser(const std::string& model_dir, int threads) {
  return load_denoiser(model_dir, threads, Precision::kF32);
}

Result<std::unique_ptr<Denoiser>> load_denoiser(const std::string& model_dir, int threads,
                                                Precision precision) {
  LoadOptions lo;
  lo.precision = precision;
  return load_denoiser(model_dir, threads, lo);
}

Result<std::unique_ptr<Denoiser>> load_denoiser(const std::string& model_dir, int threads,
                                                const LoadOptions& lo) {
  CpuLoadProbe probe;  // the load is the measurement window (cpu_load.h)
  DUET_ASSIGN_OR_RETURN(std::shared_ptr<const Model> model, Model::load(model_dir, lo));
  // this thread's team, before any oneDNN primitive is created (they are made on first use)
  omp_set_num_threads(probe.finish(threads).threads);
  return make_model_denoiser(std::move(model));
}

}  // namespace duet
