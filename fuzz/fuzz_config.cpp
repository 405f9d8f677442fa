// Fuzzes config.json parsing + validation (defaults merge, JSON types, ranges, derived-size
// overflow guards). Invariants: errors start with the file name; an accepted config validates,
// round-trips through config_to_json, and its derived sizes are positive.
#include "duet/checkpoint.h"
#include "duet/config.h"
#include "duet/tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string name = "fuzz/config.json";
  auto r = duet::parse_config(duet::fuzz::as_string(data, size), name);
  if (!r.is_ok()) {
    FUZZ_CHECK(duet::fuzz::names_source(r.status().message(), name + ": "), "%s",
               r.status().message().c_str());
    return 0;
  }
  const duet::ModelConfig& c = *r;
  FUZZ_CHECK(duet::validate_config(c, name).is_ok());
  FUZZ_CHECK(c.tokens() > 0 && c.patch_dim() > 0 && c.backbone_head_dim() > 0);
  FUZZ_CHECK(c.text_head_dim() > 0 && c.refiner_levels() > 0 && c.refiner_stride() > 0);
  for (int64_t ch : c.level_channels()) FUZZ_CHECK(ch > 0);
  const std::string j = duet::config_to_json(c);
  auto back = duet::parse_config(j, name);
  FUZZ_CHECK(back.is_ok(), "%s", back.status().message().c_str());
  FUZZ_CHECK(duet::config_to_json(*back) == j);
  auto tok = duet::make_tokenizer(c);
  FUZZ_CHECK(tok.is_ok());
  // The tensor table is O(depth + layers + levels) entries: only enumerate modest models here.
  if (c.backbone.depth + c.text.layers + c.refiner_levels() <= 64) {
    for (const auto& e : duet::expected_tensors(c))
      for (int64_t d : e.shape) FUZZ_CHECK(d > 0, "%s", e.name.c_str());
  }
  return 0;
}
