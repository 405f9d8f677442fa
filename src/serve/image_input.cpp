#include "serve/image_input.h"

#include <memory>
#include <vector>

namespace duet::serve {
namespace {

std::string dims(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

}  // namespace

bool base64_decode(const std::string& in, std::string* out) {
  size_t start = 0;
  if (in.rfind("data:", 0) == 0) {
    const size_t comma = in.find(',');
    // "data:" + ... + ";base64" before the comma (a shorter prefix must not underflow comma - 7)
    if (comma == std::string::npos || comma < 12 || in.compare(comma - 7, 7, ";base64") != 0)
      return false;
    start = comma + 1;
  }
  out->clear();
  out->reserve((in.size() - start) / 4 * 3 + 3);
  uint32_t buf = 0;
  int bits = 0;
  bool padding = false;
  for (size_t i = start; i < in.size(); ++i) {
    const char c = in[i];
    int v;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+' || c == '-')
      v = 62;
    else if (c == '/' || c == '_')
      v = 63;
    else if (c == '=') {
      padding = true;
      continue;
    } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
      continue;
    } else {
      return false;
    }
    if (padding) return false;  // data after '='
    buf = (buf << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((buf >> bits) & 0xff));
    }
  }
  return true;
}

std::variant<PngImage, ApiError> decode_upload(const std::string& bytes, const std::string& field,
                                               const EngineInfo& info) {
  static const char kSignature[8] = {'\x89', 'P', 'N', 'G', '\r', '\n', '\x1a', '\n'};
  if (bytes.empty()) return bad(field, "'" + field + "' is empty (expected a PNG image)");
  if (bytes.size() < 8 || bytes.compare(0, 8, std::string(kSignature, 8)) != 0)
    return bad(field, "'" + field + "' is not a PNG image (duet accepts PNG uploads only)");
  PngLimits limits;
  limits.max_width = limits.max_height = info.max_side;
  limits.max_pixels = static_cast<int64_t>(info.max_side) * info.max_side;
  limits.max_text_bytes = 64 << 10;
  auto img = decode_png(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), limits,
                        "'" + field + "'");
  if (!img.is_ok()) return bad(field, img.status().message());
  return std::move(img).value();
}

std::optional<ApiError> attach_init_image(const PngImage& img, const std::string& field,
                                          const EngineInfo& info, ImageRequest* r) {
  if (img.width != r->width || img.height != r->height)
    return bad(field, "'" + field + "' is " + dims(img.width, img.height) +
                          " but the requested size is " + dims(r->width, r->height) +
                          " (duet does not resize; send an image of the output size, or omit "
                          "the size to use the image's)");
  auto conv = convert_channels(img, info.channels);
  if (!conv.is_ok()) return bad(field, "'" + field + "': " + conv.status().message());
  auto x = std::make_shared<std::vector<float>>(static_cast<size_t>(info.channels) * img.width *
                                                img.height);  // [C, H, W]
  if (Status st = image_to_chw(*conv, x->data(), x->size()); !st.is_ok())
    return bad(field, "'" + field + "': " + st.message());
  r->init_image = std::move(x);
  return std::nullopt;
}

std::optional<ApiError> attach_mask(const PngImage& img, const std::string& field, MaskRule rule,
                                    bool invert, ImageRequest* r) {
  if (!r->init_image) return bad(field, "'" + field + "' needs an image to inpaint");
  if (img.width != r->width || img.height != r->height)
    return bad(field, "'" + field + "' is " + dims(img.width, img.height) + " but the image is " +
                          dims(r->width, r->height));
  const size_t hw = static_cast<size_t>(img.width) * img.height;
  auto m = std::make_shared<std::vector<float>>(hw);  // [H, W], 1 = regenerate
  const float maxv = static_cast<float>(img.max_value());
  const int c = img.channels;
  const bool alpha = rule == MaskRule::kOpenAI && (c == 2 || c == 4);
  PngImage gray;
  if (!alpha) {
    auto g = convert_channels(img, 1);
    if (!g.is_ok()) return bad(field, "'" + field + "': " + g.status().message());
    gray = std::move(g).value();
  }
  for (size_t i = 0; i < hw; ++i) {
    const float v = alpha ? 1.0f - img.samples[i * c + c - 1] / maxv : gray.samples[i] / maxv;
    (*m)[i] = invert ? 1.0f - v : v;
  }
  r->mask = std::move(m);
  return std::nullopt;
}

}  // namespace duet::serve
