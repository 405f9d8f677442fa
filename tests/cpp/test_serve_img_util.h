// Helpers for the img2img / A1111 / MCP front-end tests: PNG uploads, base64, multipart forms.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "duet/png.h"
#include "test_serve_util.h"

namespace duet::testing {

// An 8-bit PNG of w x h with `channels` samples per pixel from f(x, y, c).
inline std::string make_png(int w, int h, int channels,
                            const std::function<int(int, int, int)>& f) {
  PngImage img;
  img.width = w;
  img.height = h;
  img.channels = channels;
  img.samples.resize(static_cast<size_t>(w) * h * channels);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c)
        img.samples[(static_cast<size_t>(y) * w + x) * channels + c] =
            static_cast<uint16_t>(f(x, y, c));
  auto bytes = encode_png(img);
  EXPECT_TRUE(bytes.is_ok()) << bytes.status().to_string();
  return bytes.is_ok() ? std::string(bytes->begin(), bytes->end()) : std::string();
}

// A gradient test picture (distinct per channel).
inline std::string gradient_png(int w, int h, int channels) {
  return make_png(w, h, channels,
                  [&](int x, int y, int c) { return (x * 255 / w + y * 7 + c * 60) % 256; });
}

inline std::string b64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size()) v |= uint8_t(in[i + 1]) << 8;
    out += {t[v >> 18], t[(v >> 12) & 63], i + 1 < in.size() ? t[(v >> 6) & 63] : '=', '='};
  }
  return out;
}

inline std::string unb64(const std::string& in) {
  std::string out;
  int buf = 0, bits = 0;
  for (char c : in) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+'             ? 62
            : c == '/'             ? 63
                                   : -1;
    if (v < 0) continue;
    buf = (buf << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((buf >> bits) & 0xff);
    }
  }
  return out;
}

inline PngImage png_of(const std::string& bytes) {
  auto r = decode_png(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? std::move(r).value() : PngImage{};
}

#ifdef DUET_TEST_HAVE_HTTP
inline httplib::MultipartFormData text_part(const std::string& name, const std::string& value) {
  return {name, value, "", ""};
}
inline httplib::MultipartFormData file_part(const std::string& name, const std::string& bytes,
                                            const std::string& type = "image/png") {
  return {name, bytes, name + ".png", type};
}
#endif

// The error's `param` (or "<none>").
inline std::string error_param(const std::string& body) {
  json j = parse_or_null(body);
  if (!j.is_object() || !j.contains("error") || !j["error"]["param"].is_string()) return "<none>";
  return j["error"]["param"];
}

}  // namespace duet::testing
