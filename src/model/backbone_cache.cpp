// Backbone caching: the spec's text form, the per-request cache state and its skip decision
// (the block-level mechanics are in backbone_forward.cpp; the rule in duet/backbone_cache.h).
#include "model/backbone_cache_state.h"

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>

namespace duet {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t b = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(b, i - b));
      b = i + 1;
    }
  return out;
}

bool parse_double(std::string_view s, double* v) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, *v);
  return ec == std::errc() && p == end && std::isfinite(*v);
}

bool parse_int(std::string_view s, int* v) {
  if (s.empty()) return false;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, *v);
  return ec == std::errc() && p == end;
}

std::string fmt(double v) {  // the shortest text that reads back as exactly v
  char b[64];
  auto [p, ec] = std::to_chars(b, b + sizeof b, v);
  return ec == std::errc() ? std::string(b, p) : std::string("nan");
}

}  // namespace

Result<CacheSpec> parse_cache_spec(std::string_view text, std::string_view what) {
  const std::string w(what);
  auto bad = [&](const std::string& why) {
    return invalid_argument(w + " '" + std::string(text) + "': " + why +
                            " (expected off | on | step:THRESH[,START,END] | "
                            "block:F,B,THRESH[,START,END])");
  };
  CacheSpec spec;
  if (text == "off") return spec;
  if (text == "on") return parse_cache_spec(kCacheOnSpec, what);
  const size_t colon = text.find(':');
  const std::string_view kind = text.substr(0, colon);
  if (colon == std::string_view::npos || (kind != "step" && kind != "block"))
    return bad("unknown cache method");
  const std::vector<std::string_view> f = split(text.substr(colon + 1), ',');
  size_t k = 0;
  if (kind == "step") {
    spec.mode = CacheMode::kStep;
    if (f.size() != 1 && f.size() != 3) return bad("step takes THRESH or THRESH,START,END");
  } else {
    spec.mode = CacheMode::kBlock;
    if (f.size() != 3 && f.size() != 5)
      return bad("block takes F,B,THRESH or F,B,THRESH,START,END");
    if (!parse_int(f[0], &spec.first) || spec.first < 1)
      return bad("F (first blocks always run) must be an integer >= 1");
    if (!parse_int(f[1], &spec.last) || spec.last < 0)
      return bad("B (last blocks always run) must be an integer >= 0");
    k = 2;
  }
  if (!parse_double(f[k], &spec.threshold) || !(spec.threshold > 0) || spec.threshold > 1e6)
    return bad("THRESH must be a number in (0, 1e6]");
  if (f.size() > k + 1) {
    if (!parse_double(f[k + 1], &spec.start) || !parse_double(f[k + 2], &spec.end) ||
        !(spec.start >= 0 && spec.start < spec.end && spec.end <= 1))
      return bad("START,END must satisfy 0 <= START < END <= 1");
  }
  return spec;
}

Status check_cache_spec(const CacheSpec& spec, int64_t depth, std::string_view what) {
  if (spec.mode != CacheMode::kBlock) return Status::ok();
  if (spec.first + spec.last >= depth)
    return invalid_argument(std::string(what) + " " + cache_spec_string(spec) +
                            ": F + B = " + std::to_string(spec.first + spec.last) +
                            " leaves no block to cache in a backbone of depth " +
                            std::to_string(depth));
  return Status::ok();
}

std::string cache_spec_string(const CacheSpec& s) {
  const std::string tail = fmt(s.threshold) + "," + fmt(s.start) + "," + fmt(s.end);
  switch (s.mode) {
    case CacheMode::kOff:
      return "off";
    case CacheMode::kStep:
      return "step:" + tail;
    case CacheMode::kBlock:
      return "block:" + std::to_string(s.first) + "," + std::to_string(s.last) + "," + tail;
  }
  return "off";
}

BackboneCache::BackboneCache() : s_(std::make_unique<State>()) {}
BackboneCache::~BackboneCache() = default;
const CacheSpec& BackboneCache::spec() const { return s_->spec; }
const CacheStats& BackboneCache::stats() const { return s_->stats; }
int64_t BackboneCache::rows() const { return s_->cap_rows; }

void BackboneCache::reset() {
  s_->stats = CacheStats{};
  s_->last_rows = 0;
  s_->acc = 0;
}

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
