// Fuzzes the HTTP request-body parser of `duet serve` (POST /v1/images/generations, /v1/jobs):
// JSON -> validated ImageRequest against the fake engine's EngineInfo. Invariants: an error is a
// 4xx whose JSON rendering succeeds; an accepted request is within every advertised limit.
#include <algorithm>

#include "duet/serve_engine.h"
#include "fuzz_util.h"
#include "serve/api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto engine = duet::make_fake_engine();
  const duet::EngineInfo& info = engine->info();
  auto parsed = duet::serve::parse_generation(duet::fuzz::as_string(data, size), *engine);
  if (auto* e = std::get_if<duet::serve::ApiError>(&parsed)) {
    FUZZ_CHECK(e->status >= 400 && e->status < 500);
    FUZZ_CHECK(!e->message.empty());
    const std::string j = duet::serve::error_json(*e);  // throws on invalid UTF-8 -> crash
    FUZZ_CHECK(!j.empty());
    return 0;
  }
  const auto& g = std::get<duet::serve::ParsedGeneration>(parsed);
  const duet::ImageRequest& r = g.request;
  FUZZ_CHECK(!r.prompt.empty() && r.prompt.size() <= 16384);
  FUZZ_CHECK(r.negative_prompt.size() <= 16384);
  FUZZ_CHECK(r.n >= 1 && r.n <= info.max_n, "n=%d", r.n);
  FUZZ_CHECK(r.width >= info.stride && r.width <= info.max_side && r.width % info.stride == 0);
  FUZZ_CHECK(r.height >= info.stride && r.height <= info.max_side && r.height % info.stride == 0);
  FUZZ_CHECK(static_cast<int64_t>(r.n) * r.width * r.height <= (int64_t{1} << 24));
  FUZZ_CHECK(r.steps >= 1 && r.steps <= info.max_steps);
  FUZZ_CHECK(std::find(info.samplers.begin(), info.samplers.end(), r.sampler) !=
             info.samplers.end());
  FUZZ_CHECK(r.cfg_scale >= 0 && r.cfg_scale <= 100);
  FUZZ_CHECK(r.seed >= 0, "seed=%lld", static_cast<long long>(r.seed));
  FUZZ_CHECK(r.refine_every >= 0 && r.refine_every <= 1000);
  FUZZ_CHECK(g.response_format == "b64_json");
  return 0;
}
