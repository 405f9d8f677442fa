// Uploaded images (img2img start images and inpainting masks) -> the typed ImageRequest fields,
// with errors that name the form / JSON field. Shared by the OpenAI edits route, the job API,
// the A1111 `sdapi` routes and MCP.
#pragma once

#include <optional>
#include <string>
#include <variant>

#include "duet/png.h"
#include "duet/serve_engine.h"
#include "serve/api.h"

namespace duet::serve {

// Standard or URL-safe base64 (padding optional, whitespace ignored), optionally behind a
// "data:<type>;base64," prefix as browsers and A1111 clients send it. false on any other byte.
bool base64_decode(const std::string& in, std::string* out);

// Decodes a PNG upload (not a PNG, truncated, corrupt or over the server's side limit: 400
// naming `field`).
std::variant<PngImage, ApiError> decode_upload(const std::string& bytes, const std::string& field,
                                               const EngineInfo& info);

// Sets r->init_image from `img`: converted to the model's channels (RGB <-> gray as `duet
// generate --init-image`, alpha dropped); it must be exactly r->width x r->height (duet does not
// resize).
std::optional<ApiError> attach_init_image(const PngImage& img, const std::string& field,
                                          const EngineInfo& info, ImageRequest* r);

// How a mask image says which pixels to regenerate.
enum class MaskRule {
  kOpenAI,        // with an alpha channel the transparent pixels (m = 1 - alpha / max), else white
  kWhiteRepaints  // A1111: the white pixels (m = luma / max; alpha ignored)
};

// Sets r->mask [H, W] from `img` (r->width x r->height; needs the init image). invert: m = 1 - m.
std::optional<ApiError> attach_mask(const PngImage& img, const std::string& field, MaskRule rule,
                                    bool invert, ImageRequest* r);

}  // namespace duet::serve
