// BackboneCache::State — what one request's backbone cache holds between calls.
#pragma once

#include <vector>

#include "model/context_state.h"

namespace duet {

struct BackboneCache::State {
  CacheSpec spec;
  CacheStats stats;
  const Backend* be = nullptr;
  int64_t cap_rows = 0, N = 0, D = 0, depth = 0;
  int64_t a = 0, e = 0;        // the cached span of blocks [a, e)
  Tensor res;                  // backend [cap_rows, N, D]: h_e − h_a of the last computed call
  Tensor minus_one;            // backend [D] of −1 (res = h_e + (−1)·h_a, exact in float)
  std::vector<float> prev;     // host [rows, N, D] indicator to compare with
  std::vector<float> ind;      // host [rows, N, D] block mode: this call's h_F − h_in
  std::vector<float> h_in;     // host [rows, N, D] block mode: this call's h_0
  std::vector<float> scratch;  // host download buffer (backends that are not host-visible)
  int64_t last_rows = 0;       // rows of the cached residual (0 = nothing cached)
  double acc = 0;              // step mode: accumulated rel since the last compute
  bool computing = false;      // this call's decision (valid from block a on)

  // count floats at backend_ptr as host memory (downloaded into scratch where needed).
  const float* host_rows(const float* backend_ptr, size_t count);
  // The rule of duet/backbone_cache.h; updates prev / acc / stats. true = compute the span.
  bool decide(const float* ind_host, int64_t rows, bool eligible);
};

}  // namespace duet
