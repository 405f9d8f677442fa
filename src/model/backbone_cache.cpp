// Backbone caching: the per-request cache state and its skip decision (the spec's text form is
// in src/pipeline/cache_spec.cpp, the block-level mechanics in backbone_forward.cpp, the rule in
// duet/backbone_cache.h).
#include "model/backbone_cache_state.h"

#include <cmath>
#include <cstring>
#include <limits>

namespace duet {
BackboneCache::BackboneCache() : s_(std::make_unique<State>()) {}
BackboneCache::~BackboneCache() = default;
const CacheSpec& BackboneCache::spec() const { return s_->spec; }
const CacheStats& BackboneCache::stats() const { return s_->stats; }

Result<std::unique_ptr<BackboneCache>> BackboneCache::create(const Context& ctx,
                                                             const CacheSpec& spec, int64_t rows) {
  const ModelConfig& cfg = ctx.model().config();
  if (spec.mode == CacheMode::kOff)
    return invalid_argument("BackboneCache::create: the cache spec is off");
  DUET_RETURN_IF_ERROR(check_cache_spec(spec, cfg.backbone.depth));
  if (rows < 1 || rows > 65536)
    return invalid_argument("BackboneCache::create: rows must be in [1, " + std::to_string(65536) +
                            "], got " + std::to_string(rows));
  std::unique_ptr<BackboneCache> cache(new BackboneCache());
  State& s = *cache->s_;
  s.spec = spec;
  s.be = ctx.model().impl().be;
  s.cap_rows = rows;
  s.N = (ctx.height() / cfg.backbone.patch) * (ctx.width() / cfg.backbone.patch);
  s.D = cfg.backbone.width;
  s.depth = cfg.backbone.depth;
  s.a = spec.mode == CacheMode::kStep ? 0 : spec.first;
  s.e = spec.mode == CacheMode::kStep ? s.depth : s.depth - spec.last;
  const size_t n = static_cast<size_t>(rows * s.N * s.D);
  DUET_ASSIGN_OR_RETURN(s.res, backend_tensor(*s.be, {rows, s.N, s.D}));
  std::vector<float> minus(static_cast<size_t>(s.D), -1.0f);
  DUET_ASSIGN_OR_RETURN(s.minus_one, upload_tensor(*s.be, Tensor::view(minus.data(), {s.D})));
  s.prev.resize(n);
  s.ind.resize(n);
  if (spec.mode == CacheMode::kBlock) s.h_in.resize(n);
  if (!s.be->host_visible()) s.scratch.resize(n);
  return cache;
}

const float* BackboneCache::State::host_rows(const float* backend_ptr, size_t count) {
  if (be->host_visible()) return backend_ptr;
  be->download(scratch.data(), backend_ptr, sizeof(float) * count);
  return scratch.data();
}

bool BackboneCache::State::decide(const float* ind_host, int64_t rows, bool eligible) {
  const size_t n = static_cast<size_t>(rows * N * D);
  bool compute = last_rows != rows || !eligible;
  if (!compute) {
    double num = 0, den = 0;  // rel = Σ|ind − prev| / Σ|prev| in float64
    for (size_t i = 0; i < n; ++i) {
      num += std::fabs(static_cast<double>(ind_host[i]) - static_cast<double>(prev[i]));
      den += std::fabs(static_cast<double>(prev[i]));
    }
    const double rel = den > 0 ? num / den : std::numeric_limits<double>::infinity();
    if (spec.mode == CacheMode::kStep) {
      acc += rel;
      compute = !(acc < spec.threshold);
    } else {
      compute = !(rel < spec.threshold);
    }
  }
  // step: prev = the previous call's indicator; block: the last computed call's.
  if (spec.mode == CacheMode::kStep || compute)
    std::memcpy(prev.data(), ind_host, n * sizeof(float));
  if (compute) {
    acc = 0;
    last_rows = rows;
  }
  stats.calls += 1;
  stats.computed += compute ? 1 : 0;
  stats.blocks_total += depth;
  stats.blocks_run += compute ? depth : depth - (e - a);
  return compute;
}

}  // namespace duet
