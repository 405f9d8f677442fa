// Backbone caching (docs/caching.md): skip backbone blocks whose output barely changes between
// adjacent denoising calls and reuse their last computed residual instead.
//
//   step:T[,S,E]      the whole block stack (TeaCache / EasyCache family). Indicator: block 0's
//                     modulated input xm = modulate(ln(h_in), sh1, sc1) of the request's rows;
//                     rel = Σ|xm − xm_prev| / Σ|xm_prev| (float64) against the previous call;
//                     acc += rel; skip while acc < T, else compute and acc = 0.
//   block:F,B,T[,S,E] the middle blocks [F, depth − B) (DBCache). The first F blocks always run;
//                     indicator: their residual h_F − h_in; rel against the indicator of the last
//                     call that computed the middle; skip iff rel < T. The last B blocks always
//                     run.
//
// A skipped span applies h_end = h_start + res, res = h_end − h_start of the last computed call
// (float32, the same ops as the Python twin in python/duet_ref/cache.py). Calls are computed
// regardless on the first call, when the request's row count changed (a guidance interval), and
// outside START <= call / num_calls < END. The refiner always runs on its own schedule.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "duet/status.h"

namespace duet {

enum class CacheMode { kOff, kStep, kBlock };

struct CacheSpec {
  CacheMode mode = CacheMode::kOff;
  double threshold = 0;       // step: accumulated rel; block: rel (both > 0)
  double start = 0, end = 1;  // eligible calls: start <= call / num_calls < end
  int first = 1, last = 0;    // block: always-run first F (>= 1) and last B (>= 0) blocks
};

// "off" | "on" (kCacheOnSpec) | "step:T[,S,E]" | "block:F,B,T[,S,E]". Errors name `what` (the
// option or field, e.g. "--cache" or "cache") and the offending part.
Result<CacheSpec> parse_cache_spec(std::string_view text, std::string_view what = "cache");
// Checks F + B < depth (at least one cacheable block) for a model of `depth` blocks.
Status check_cache_spec(const CacheSpec& spec, int64_t depth, std::string_view what = "cache");
// The canonical text: "off", "step:0.3,0,1", "block:1,0,0.1,0,1" (parse_cache_spec reads it).
std::string cache_spec_string(const CacheSpec& spec);
// What `--cache on` means (chosen from the sweeps in docs/caching.md).
inline constexpr std::string_view kCacheOnSpec = "step:0.15";

struct CacheStats {
  int calls = 0;             // backbone calls that consulted the cache
  int computed = 0;          // of which computed the cached span (the rest reused it)
  int64_t blocks_run = 0;    // blocks this request's rows needed over those calls
  int64_t blocks_total = 0;  // blocks without caching (calls × depth)
};

}  // namespace duet
