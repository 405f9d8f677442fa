// The backbone cache spec's text form (duet/backbone_cache.h): parsing with errors naming the
// option, the depth check and the canonical text. No backend code: the server's request parser
// (and its fuzzers) use it alone.
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "duet/backbone_cache.h"

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

}  // namespace duet
