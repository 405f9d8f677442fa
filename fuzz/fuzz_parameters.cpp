// Fuzzes the PNG `parameters` (webui infotext) parser. Invariants: no crash; an error says
// "malformed parameters line"; parse(format(parse(x))) always parses, and for text without '\r'
// whose field values are valid UTF-8 it equals parse(x) (what duet writes, it reads back).
#include "duet/png.h"
#include "fuzz_util.h"

namespace {

bool valid_utf8(const std::string& s) {  // strict (RFC 3629), as nlohmann::json checks it
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c < 0x80) {
      n = 0;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char b = static_cast<unsigned char>(s[i + k]);
      if (k == 1 ? (b < lo || b > hi) : (b >> 6) != 2) return false;
    }
    i += n + 1;
  }
  return true;
}

bool clean(const duet::ImageParameters& p) {
  for (const auto& [k, v] : p.fields)
    if (!valid_utf8(v)) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = duet::fuzz::as_string(data, size);
  auto r = duet::parse_parameters(text);
  if (!r.is_ok()) {
    FUZZ_CHECK(r.status().message().find("malformed parameters line") != std::string::npos, "%s",
               r.status().message().c_str());
    return 0;
  }
  const duet::ImageParameters& p = *r;
  for (const auto& [k, v] : p.fields) {
    FUZZ_CHECK(!k.empty());
    FUZZ_CHECK(p.get(k) != nullptr);
  }
  const std::string out = duet::format_parameters(p);
  auto back = duet::parse_parameters(out);
  FUZZ_CHECK(back.is_ok(), "%s", back.status().message().c_str());
  if (text.find('\r') == std::string::npos && clean(p)) {
    FUZZ_CHECK(back->prompt == p.prompt, "prompt");
    FUZZ_CHECK(back->negative_prompt == p.negative_prompt, "negative prompt");
    FUZZ_CHECK(back->fields == p.fields, "fields");
  }
  return 0;
}
